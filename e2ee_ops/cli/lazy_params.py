"""Keep pydantic out of start-up: typer (0.29) builds a pydantic TypeAdapter for every
parameter it processes, including options nobody gave (and the help flag), so
`e2ee-ops redis check --help` paid about 100 ms importing pydantic for the root
group's unset options.

`defer_unset_coercion()` makes typer's parameters answer an unset value (None) as
typer itself would, and build typer's own coercion on the first real value. Typer
exposes no hook for this; when its private `_TyperParameter.get_runtime_param` is
missing (another typer), nothing is changed and typer works as it always does.
"""

from __future__ import annotations

from typing import Any

__all__ = ["defer_unset_coercion"]


class _UnsetFirst:
    """A runtime parameter that answers None for None and hands the rest to typer."""

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None and not (param.multiple or param.nargs == -1):
            return None
        from typer._coercion import build_runtime_param

        param._runtime_param = build_runtime_param(param.type_descriptor)
        return param._runtime_param.coerce(value, param=param, ctx=ctx)


_STAND_IN = _UnsetFirst()


def defer_unset_coercion() -> None:
    """Let every typer parameter skip building its pydantic adapter while unset."""
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
