"""Result types every procedure returns, and the one mapping from outcomes to exit codes.

A read-only check returns a `Report` of `Finding`s; a command that changes
something returns a `Plan` of `Step`s. Both have a `status`, the worst of their
parts, and `exit_code_for()` turns a status or an exception into the process exit
code (monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from e2ee_ops import errors


class ExitCode(enum.IntEnum):
    """Process exit codes: the Nagios plugin convention plus usage and interrupt."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3
    USAGE = 64  # EX_USAGE, so a typo is never mistaken for CRITICAL
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


@functools.total_ordering
class Status(enum.Enum):
    """Health of one finding or of a whole result. Ordered: OK < WARNING < UNKNOWN < CRITICAL."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"

    @property
    def severity(self) -> int:
        """Rank used by `worst()`: UNKNOWN outranks WARNING (we could not tell), not CRITICAL."""
        return _SEVERITY[self]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode[self.name]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return self.severity < other.severity

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        """The most severe status, OK for none."""
        return max(statuses, key=lambda s: s.severity, default=cls.OK)


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def classify(
    value: float | None,
    *,
    warn: float | None = None,
    crit: float | None = None,
    higher_is_worse: bool = True,
) -> Status:
    """Status of a measured value against thresholds; UNKNOWN when there is no value.

    With `higher_is_worse` a value above `crit` is CRITICAL (latency, lag); otherwise
    a value below `crit` is (prekeys remaining). Thresholds are exclusive, as in the
    runbook: "OTPK pool < 5" is critical, "p99 > 500 ms" is a warning.
    """
    if value is None:
        return Status.UNKNOWN

    def beyond(limit: float | None) -> bool:
        if limit is None:
            return False
        return value > limit if higher_is_worse else value < limit

    if beyond(crit):
        return Status.CRITICAL
    if beyond(warn):
        return Status.WARNING
    return Status.OK


@dataclass(frozen=True)
class Finding:
    """One measured fact with its verdict, e.g. "otpk_pool_min = 3 (critical below 5)"."""

    name: str
    status: Status
    value: Any
    summary: str
    threshold_warn: float | None = None
    threshold_crit: float | None = None
    unit: str = ""
    higher_is_worse: bool = True  # False when low values are bad (prekeys remaining)
    minimum: float | None = None  # the value's known bounds, where there are any
    maximum: float | None = None


@dataclass
class Report:
    """The result of a read-only check: findings and their overall status."""

    title: str
    findings: list[Finding] = field(default_factory=list)
    summary: str | None = None  # one line; derived from the findings when None
    data: dict[str, Any] = field(default_factory=dict)  # extra, JSON-serialisable detail

    @property
    def status(self) -> Status:
        return Status.worst(f.status for f in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        return self.status.exit_code

    def one_line_summary(self) -> str:
        """The explicit summary, else the non-OK findings' summaries (each sentence once:
        instances reporting the same fleet-wide figure say the same), else a count."""
        if self.summary:
            return self.summary
        bad = [f for f in self.findings if f.status is not Status.OK]
        if bad:
            bad.sort(key=lambda f: f.status.severity, reverse=True)
            return "; ".join(dict.fromkeys(f.summary for f in bad))
        if not self.findings:
            return "nothing to check"
        return f"all {len(self.findings)} checks OK"


@dataclass
class Step:
    """One step of a plan: what it does, whether it ran, and what came of it."""

    description: str
    executed: bool = False
    outcome: str | None = None
    status: Status | None = None  # None until executed (or skipped with a reason)


@dataclass
class Plan:
    """The result of a mutating command: the steps, shown before and after execution."""

    title: str
    steps: list[Step] = field(default_factory=list)
    executed: bool = False  # True when run with --execute
    summary: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return Status.worst(s.status for s in self.steps if s.status is not None)

    @property
    def exit_code(self) -> ExitCode:
        return self.status.exit_code

    def one_line_summary(self) -> str:
        if self.summary:
            return self.summary
        done = sum(1 for s in self.steps if s.executed)
        if not self.executed:
            return f"plan of {len(self.steps)} steps; nothing changed (run with --execute)"
        return f"{done} of {len(self.steps)} steps executed"


NOT_RUN = "not run: an earlier step failed"

# The plan a StepRunner is executing in this context. When acting is cut short (Ctrl-C,
# SIGTERM, a lost connection) the caller never gets the plan back; this lets the journal's
# outcome still list the steps that completed (see `executing`).
_executing: ContextVar[Plan | None] = ContextVar("executing_plan", default=None)


@contextmanager
def executing() -> Iterator[Callable[[], Plan | None]]:
    """Within the block, the returned function gives the plan a StepRunner started, if any."""
    token = _executing.set(None)
    try:
        yield _executing.get
    finally:
        _executing.reset(token)


class StepRunner:
    """Records the outcome of each step of `plan`, in order, as it executes: each step is
    done, skipped with a reason, or fails, and a failure marks every later step "not run".
    """

    def __init__(self, plan: Plan, progress: Callable[[str], None] = lambda _m: None) -> None:
        plan.executed = True
        self.plan = plan
        _executing.set(plan)
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

    def fail(self, outcome: str, *, rest: str = NOT_RUN, status: Status = Status.CRITICAL) -> Plan:
        """The current step failed (CRITICAL, or UNKNOWN when it could not tell); the
        rest do not run (`rest` says why)."""
        self.done(outcome, status)
        for later in self._steps:
            later.outcome = rest
        return self.plan


def exit_code_for(outcome: Status | BaseException) -> ExitCode:
    """The exit code of a status or of an exception: the single place this is decided."""
    if isinstance(outcome, Status):
        return outcome.exit_code
    if isinstance(outcome, errors.Terminated):
        return ExitCode.TERMINATED
    if isinstance(outcome, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(outcome, errors.UsageError):
        return ExitCode.USAGE
    if isinstance(outcome, errors.VerificationFailed | errors.ActionFailed):
        return ExitCode.CRITICAL
    # Config, unreachable, timeout, auth, refused, service errors and anything
    # unexpected: we could not tell what state the service is in.
    return ExitCode.UNKNOWN
