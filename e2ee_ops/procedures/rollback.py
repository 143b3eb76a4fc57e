"""Runbook: Rollback/Hotfix Procedures. What the three rollbacks share.

Each rollback (`rollback_flag`, `rollback_migration`, `rollback_git`) is computed twice
by its command: once to show the plan, once with execute=True, when every check is made
again before the first change, so bad input stops everything before anything is done.
While executing, a `StepRunner` (in `status`) walks the plan's steps in order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Whether a table name (`t` or `schema.t`) matches one of the glob `patterns`."""
    bare = name.rpartition(".")[2]
    return any(fnmatch.fnmatchcase(bare, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def listing(items: Iterable[str], *, limit: int = 10) -> str:
    """`a, b, c` cut at `limit` items with "and N more"."""
    shown = list(items)
    more = len(shown) - limit
    text = ", ".join(shown[:limit])
    return f"{text} and {more} more" if more > 0 else text
