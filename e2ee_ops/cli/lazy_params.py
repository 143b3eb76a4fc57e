"""Keep pydantic out of start-up: typer (0.29) builds a pydantic TypeAdapter for every
parameter it processes, including options nobody gave (and the help flag), so
`e2ee-ops redis check --help` paid about 100 ms importing pydantic for the root
group's unset options, and every command that runs paid it for its given options and
non-None defaults.

`defer_unset_coercion()` makes typer's parameters answer an unset value (None) as
typer itself would, and a plain valid value (an int within its range, a choice, a
path, a string) with the value typer's coercion returns for it, computed without
pydantic; anything else (a bad value, a list, a custom parser) goes to typer's own
coercion, so its error messages are typer's. Typer exposes no hook for this; when its
private `_TyperParameter.get_runtime_param` is missing (another typer), nothing is
changed and typer works as it always does. `tests/unit/test_lazy_params.py` checks the
values against typer's own coercion.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["defer_unset_coercion", "plain_value"]

# Digits only: what int() and float() read exactly as pydantic does. Other spellings
# pydantic accepts ("1_000", " 5", "1e3") go to typer.
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


class _Unhandled:
    pass


UNHANDLED: Any = _Unhandled()


def plain_value(value: Any, param: Any, ctx: Any) -> Any:
    """`value` coerced as typer would, for the plain cases; UNHANDLED otherwise."""
    from pathlib import Path

    from typer._param_types import coerce_cli_choice, coerce_cli_path, routes_to_path

    desc = param.type_descriptor
    info = desc.parameter_info
    annotation = desc.annotation
    if info.parser is not None or desc.is_file or desc.is_list or desc.is_tuple:
        return UNHANDLED
    if desc.is_choice:
        try:
            return coerce_cli_choice(
                value, choices=desc.choices, case_sensitive=desc.case_sensitive, ctx=ctx
            )
        except ValueError:  # not a choice: typer says so in its words
            return UNHANDLED
    if annotation is int or annotation is float:
        return _number(value, annotation, info)
    if annotation is str or annotation is bool:
        return value if type(value) is annotation else UNHANDLED
    if routes_to_path(annotation, info) and isinstance(value, str):
        path_type = info.path_type
        if path_type is None and isinstance(annotation, type) and issubclass(annotation, Path):
            path_type = annotation
        if path_type is Path:
            # typer makes Path(value) with pydantic and checks that; where Path changes the
            # spelling ("", "./x", "x/") the checks could differ: typer's then.
            if str(Path(value)) != value:
                return UNHANDLED
            checked = coerce_cli_path(value, info, path_type=None, param=param, ctx=ctx)
            return Path(str(checked))
        if path_type in (None, str):
            return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)
    return UNHANDLED


def _number(value: Any, annotation: type[int] | type[float], info: Any) -> Any:
    if info.clamp:
        return UNHANDLED
    number: int | float
    if type(value) is annotation or (annotation is float and type(value) is int):
        number = annotation(value)
    elif isinstance(value, str) and (_INT if annotation is int else _FLOAT).fullmatch(value):
        number = annotation(value)
    else:
        return UNHANDLED
    # Out of range (or NaN): typer's message.
    if info.min is not None and not number >= info.min:
        return UNHANDLED
    if info.max is not None and not number <= info.max:
        return UNHANDLED
    return number


class _UnsetFirst:
    """A runtime parameter that answers None for None and plain values itself, and hands
    the rest to typer."""

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if param.multiple or param.nargs == -1:
            return self._typer(value, param, ctx)
        if value is None:
            return None
        plain = plain_value(value, param, ctx)
        if plain is not UNHANDLED:
            return plain
        return self._typer(value, param, ctx)

    @staticmethod
    def _typer(value: Any, param: Any, ctx: Any) -> Any:
        from typer._coercion import build_runtime_param

        param._runtime_param = build_runtime_param(param.type_descriptor)
        return param._runtime_param.coerce(value, param=param, ctx=ctx)


_STAND_IN = _UnsetFirst()


def defer_unset_coercion() -> None:
    """Let every typer parameter skip building its pydantic adapter for unset and plain
    values."""
    from typer import core

    parameter = getattr(core, "_TyperParameter", None)
    original = getattr(parameter, "get_runtime_param", None)
    if parameter is None or original is None or getattr(original, "deferred", False):
        return

    def get_runtime_param(self: Any) -> Any:
        if getattr(self, "_runtime_param", None) is None:
            return _STAND_IN
        return original(self)

    get_runtime_param.deferred = True  # type: ignore[attr-defined]
    parameter.get_runtime_param = get_runtime_param
