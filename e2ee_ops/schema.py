"""Typed sections of settings, validated with a message per key and no pydantic.

The settings (`config.py`) are `Section`s: keyword-only and frozen like dataclasses
(type checkers see them as such). A field's default, bounds, YAML key and after-check
are declared with `setting(default=10.0, gt=0)`; a section's own rule is its
`_check()`. `load_section(Settings, tree)` turns a YAML/environment tree into sections,
or raises InvalidSettings with every problem and its key in pydantic's wording (the
settings were pydantic models; the messages operators know stayed): "Input should be
a valid integer, unable to parse string as an integer", "Field required", "Input
should be greater than 0", ... Building a section directly (`Thresholds(otpk_critical=3)`)
validates and coerces the same way.

Importing pydantic and building thirty models cost a command about 70 ms of CPU at
start-up (`bench/startup.py`). `tests/unit/test_schema.py` holds the messages and the
values beside pydantic's for every kind of field used here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from e2ee_ops.errors import InvalidSettings

__all__ = [
    "UNKNOWN_KEY",
    "Section",
    "Setting",
    "as_dict",
    "field_type",
    "fields_of",
    "is_list",
    "load_section",
    "section_in",
    "setting",
]

UNKNOWN_KEY = "unknown key"

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclasses.dataclass(frozen=True)
class Setting:
    """A field of a section: its default (or factory), bounds, YAML key and after-check."""

    name: str = ""
    key: str = ""  # the YAML key: the name, or another where the name cannot be one ("from")
    default: Any = MISSING
    default_factory: Callable[[], Any] | None = None
    rules: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is None


def setting(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    pattern: str | None = None,
    key: str | None = None,
    after: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare a field: `port: int = setting(default=587, gt=0, lt=65536)`; `after` checks the
    typed value (returns it, possibly normalised; raises ValueError with the message)."""
    rules = {
        "gt": gt,
        "ge": ge,
        "lt": lt,
        "le": le,
        "min_length": min_length,
        "pattern": pattern,
        "after": after,
    }
    return Setting(
        key=key or "",
        default=default,
        default_factory=default_factory,
        rules={k: v for k, v in rules.items() if v is not None},
    )


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
class Section:
    """Settings: keyword-only, frozen, each field validated and coerced when built.

    Like a frozen dataclass, without generating code per class: `config.py` imported in
    18 ms of CPU as thirty dataclasses, in 5 ms as sections."""

    # A plain string where this section is expected is refused with this message (secret
    # references refuse literal secrets); otherwise the usual "valid dictionary" one.
    refuse_string: ClassVar[str | None] = None

    def __init__(self, **values: Any) -> None:
        settings = fields_of(type(self))
        names = {f.name for f in settings}
        unexpected = sorted(set(values) - names)
        if unexpected:
            raise TypeError(f"{type(self).__name__} has no field {unexpected[0]!r}")
        problems: list[Problem] = []
        for f in settings:
            if f.name in values:
                value = values[f.name]
            elif f.default_factory is not None:
                value = f.default_factory()
            elif f.default is not MISSING:
                object.__setattr__(self, f.name, f.default)  # as pydantic: stands as written
                continue
            else:
                raise TypeError(f"{type(self).__name__} needs {f.name!r}")
            typed = _value(field_type(type(self), f.name), value, (f.key,), problems)
            if typed is not _INVALID:
                typed = _rules(f.rules, typed, (f.key,), problems)
            object.__setattr__(self, f.name, typed)
        if problems:
            raise InvalidSettings(problems)
        try:
            self._check()
        except ValueError as exc:
            raise InvalidSettings([((), str(exc))]) from None

    def _check(self) -> None:
        """The section's own rule across fields; raise ValueError with the message."""

    def _check_given(self, given: frozenset[str]) -> None:
        """A rule on which fields the file or environment set (not their defaults)."""

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields_of(type(self)))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Section)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields_of(type(self)))
        return f"{type(self).__name__}({shown})"


def as_dict(section: Section) -> dict[str, Any]:
    """The section's values by field name, sections within as dicts (like dataclasses.asdict)."""
    return {
        f.name: as_dict(value) if isinstance(value := getattr(section, f.name), Section) else value
        for f in fields_of(type(section))
    }


def load_section(cls: type[Any], data: Any, loc: Loc = ()) -> Any:
    """`data` (a tree from YAML and the environment) as a `cls`; raises InvalidSettings
    listing every problem with its full location."""
    problems: list[Problem] = []
    section = _section(cls, data, loc, problems)
    if problems:
        raise InvalidSettings(problems)
    return section


# --------------------------------------------------------------------------- types

_INVALID: Any = object()
_HINTS: dict[type, dict[str, Any]] = {}
_FIELDS: dict[type, tuple[Setting, ...]] = {}


def fields_of(cls: type[Section]) -> tuple[Setting, ...]:
    """The fields of a section class, in declaration order (base classes first)."""
    found = _FIELDS.get(cls)
    if found is not None:
        return found
    collected: dict[str, Setting] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, Section)):
            continue
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if "ClassVar" in str(annotation):
                continue
            declared = vars(klass).get(name, MISSING)
            spec = declared if isinstance(declared, Setting) else Setting(default=declared)
            collected[name] = dataclasses.replace(spec, name=name, key=spec.key or name)
    found = _FIELDS[cls] = tuple(collected.values())
    return found


def field_type(cls: type, name: str) -> Any:
    """The evaluated annotation of field `name` of section `cls`."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints[name]


def _alternatives(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _alternatives(arg)]
    return [annotation]


def section_in(annotation: Any) -> type[Section] | None:
    """The section class an annotation holds (`X`, `X | None`), if any."""
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def is_list(annotation: Any) -> bool:
    return any(typing.get_origin(a) is list for a in _alternatives(annotation))


def _section(cls: type[Any], data: Any, loc: Loc, problems: list[Problem]) -> Any:
    if isinstance(data, cls):
        return data
    if isinstance(data, str) and cls.refuse_string:
        problems.append((loc, cls.refuse_string))
        return _INVALID
    if not isinstance(data, Mapping):
        problems.append((loc, f"Input should be a valid dictionary or instance of {cls.__name__}"))
        return _INVALID
    values: dict[str, Any] = {}
    known: set[Any] = set()
    for f in fields_of(cls):
        known.update((f.key, f.name))
        if f.key in data:
            values[f.name] = data[f.key]
        elif f.name in data:
            values[f.name] = data[f.name]
    missing = {f.name for f in fields_of(cls) if f.required and f.name not in values}
    unknown = [((*loc, key), UNKNOWN_KEY) for key in data if key not in known]
    if missing or unknown:
        # Not buildable: say what is wrong with each field in order, then the unknown keys.
        for f in fields_of(cls):
            where = (*loc, f.key)
            if f.name in missing:
                problems.append((where, "Field required"))
            elif f.name in values:
                typed = _value(field_type(cls, f.name), values[f.name], where, problems)
                if typed is not _INVALID:
                    _rules(f.rules, typed, where, problems)
        problems.extend(unknown)
        return _INVALID
    try:
        section = cls(**values)
        section._check_given(frozenset(values))
    except InvalidSettings as exc:
        problems.extend(((*loc, *where), message) for where, message in exc.problems)
        return _INVALID
    except ValueError as exc:
        problems.append((loc, str(exc)))
        return _INVALID
    return section


def _value(annotation: Any, value: Any, loc: Loc, problems: list[Problem]) -> Any:
    """`value` as `annotation` (lax, as pydantic reads Python input), else _INVALID with
    the problem recorded."""
    alternatives = _alternatives(annotation)
    if len(alternatives) > 1:  # X | None
        if value is None and type(None) in alternatives:
            return None
        (annotation,) = [a for a in alternatives if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value in choices and any(type(value) is type(c) for c in choices):
            return value
        listed = [repr(c) for c in choices]
        either = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1]
        problems.append((loc, f"Input should be {either}"))
        return _INVALID
    if origin is list:
        if not isinstance(value, list | tuple):
            problems.append((loc, "Input should be a valid list"))
            return _INVALID
        (item_type,) = typing.get_args(annotation)
        before = len(problems)
        items = [_value(item_type, item, (*loc, i), problems) for i, item in enumerate(value)]
        return items if len(problems) == before else _INVALID
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return _section(annotation, value, loc, problems)
    parse = _LEAVES.get(annotation)
    if parse is None:  # a programming error: a setting of a kind this module cannot read
        raise TypeError(f"settings cannot hold {annotation!r}: use {', '.join(map(str, _LEAVES))}")
    try:
        return parse(value)
    except ValueError as exc:
        problems.append((loc, str(exc)))
        return _INVALID


def _rules(metadata: Mapping[str, Any], value: Any, loc: Loc, problems: list[Problem]) -> Any:
    if value is None:
        return value
    for name, words in _BOUNDS.items():
        bound = metadata.get(name)
        if bound is not None and not _BOUND_HOLDS[name](value, bound):
            problems.append((loc, f"Input should be {words} {bound}"))
            return _INVALID
    shortest = metadata.get("min_length")
    if shortest is not None and len(value) < shortest:
        unit = "character" if shortest == 1 else "characters"
        problems.append((loc, f"String should have at least {shortest} {unit}"))
        return _INVALID
    pattern = metadata.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        problems.append((loc, f"String should match pattern '{pattern}'"))
        return _INVALID
    after = metadata.get("after")
    if after is not None:
        try:
            return after(value)
        except ValueError as exc:
            problems.append((loc, str(exc)))
            return _INVALID
    return value


# In pydantic's order (a NaN breaks every bound; the first is named).
_BOUNDS = {
    "le": "less than or equal to",
    "lt": "less than",
    "ge": "greater than or equal to",
    "gt": "greater than",
}
_BOUND_HOLDS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda v, b: v > b,
    "ge": lambda v, b: v >= b,
    "lt": lambda v, b: v < b,
    "le": lambda v, b: v <= b,
}

# --------------------------------------------------------------------------- leaves
# Lax conversions of YAML and environment values, as pydantic's python mode does them.

_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_TRUE = frozenset(("1", "on", "t", "true", "y", "yes"))
_FALSE = frozenset(("0", "off", "f", "false", "n", "no"))


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    return None


def _int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("Input should be a finite number")
        if not value.is_integer():
            raise ValueError("Input should be a valid integer, got a number with a fractional part")
        return int(value)
    text = _text(value)
    if text is None and not isinstance(value, bytes | bytearray):
        raise ValueError("Input should be a valid integer")
    stripped = (text or "").strip()
    if not _INT_TEXT.fullmatch(stripped):
        raise ValueError("Input should be a valid integer, unable to parse string as an integer")
    return int(stripped.partition(".")[0])


def _float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = _text(value)
    if text is None and not isinstance(value, bytes | bytearray):
        raise ValueError("Input should be a valid number")
    try:
        if text is None or not text.strip().isascii():
            raise ValueError
        return float(text)
    except ValueError:
        raise ValueError(
            "Input should be a valid number, unable to parse string as a number"
        ) from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and math.isfinite(value) and float(value).is_integer():
        if value in (0, 1):
            return bool(value)
        raise ValueError("Input should be a valid boolean, unable to interpret input")
    text = _text(value)
    if text is None and not isinstance(value, bytes | bytearray):
        raise ValueError("Input should be a valid boolean")
    lowered = (text or "").lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _str(value: Any) -> str:
    text = _text(value)
    if text is None:
        raise ValueError("Input should be a valid string")
    return text


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise ValueError("Input is not a valid path for <class 'pathlib.Path'>")


_LEAVES: dict[Any, Callable[[Any], Any]] = {
    int: _int,
    float: _float,
    bool: _bool,
    str: _str,
    Path: _path,
}
