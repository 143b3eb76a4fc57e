"""Command groups built when used: `e2ee-ops redis check` builds the `redis` group
only, and `e2ee-ops --help` lists every group from its help text without building
any. Typer builds every command's parameters from its signature, which is most of
the start-up time once the libraries are imported (see `bench/startup.py`).

`LazyCommands` is the root group's `commands` mapping: a group's module is imported
and its click group built on first lookup, with the root Typer's settings, exactly
as `Typer.add_typer` would have built it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

__all__ = ["LazyCommands"]


class LazyCommands(MutableMapping[str, Any]):
    """Built commands, plus groups (name -> module with a Typer `app`) built on lookup."""

    def __init__(self, built: MutableMapping[str, Any], lazy: dict[str, str], root: Any) -> None:
        self._built = dict(built)
        self._lazy = {name: module for name, module in lazy.items() if name not in self._built}
        self._root = root  # the root Typer, whose settings the groups inherit

    def _app(self, name: str) -> Any:
        return importlib.import_module(self._lazy[name]).app

    def __getitem__(self, name: str) -> Any:
        if name not in self._built and name in self._lazy:
            from typer.main import get_group_from_info
            from typer.models import TyperInfo

            self._built[name] = get_group_from_info(
                TyperInfo(self._app(name)),
                pretty_exceptions_short=self._root.pretty_exceptions_short,
                rich_markup_mode=self._root.rich_markup_mode,
                suggest_commands=self._root.suggest_commands,
            )
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._lazy.pop(name, None)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._lazy.pop(name, None)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._built
        yield from (name for name in self._lazy if name not in self._built)

    def __len__(self) -> int:
        return len(set(self._built) | set(self._lazy))

    def listing(self) -> dict[str, Any]:
        """Every command for a help listing: built ones, and for groups not built yet a
        stand-in carrying only their name and help text."""
        from typer.core import TyperGroup

        def stand_in(name: str) -> Any:
            text = self._app(name).info.help
            return TyperGroup(name=name, help=text if isinstance(text, str) else None)

        return {name: self._built[name] if name in self._built else stand_in(name) for name in self}
