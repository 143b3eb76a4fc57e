"""Runbook: Rollback/Hotfix Procedures. What the three rollbacks share.

Each rollback (`rollback_flag`, `rollback_migration`, `rollback_git`) is computed twice
by its command: once to show the plan, once with execute=True, when every check is made
again before the first change, so bad input stops everything before anything is done.
While executing, a `StepRunner` walks the plan's steps in order: each step is done,
skipped with a reason, or fails, and a failure marks every later step "not run".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

from e2ee_ops.status import Plan, Status, Step

NOT_RUN = "not run: an earlier step failed"


class StepRunner:
    """Records the outcome of each step of `plan`, in order, as it executes."""

    def __init__(self, plan: Plan, progress: Callable[[str], None] = lambda _m: None) -> None:
        plan.executed = True
        self.plan = plan
        self._steps = iter(plan.steps)
        self._progress = progress

    def done(self, outcome: str, status: Status = Status.OK) -> Step:
        step = next(self._steps)
        step.executed, step.status, step.outcome = True, status, outcome
        self._progress(f"{status.name}: {outcome}")
        return step

    def skip(self, outcome: str) -> Step:
        step = next(self._steps)
        step.status, step.outcome = Status.OK, outcome
        return step

    def fail(self, outcome: str) -> Plan:
        """The current step failed (CRITICAL); the rest do not run."""
        self.done(outcome, Status.CRITICAL)
        for rest in self._steps:
            rest.outcome = NOT_RUN
        return self.plan


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
