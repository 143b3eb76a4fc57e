"""JUnit XML for CI (Jenkins, GitLab, Ant's JUnitReport), written by junitparser.

One test suite per run, valid against the strict Ant schema (`timestamp` without
a zone, `hostname`, `time`, `properties`, `system-out`, `system-err`):
a Report gives one test case per finding (WARNING and CRITICAL fail, UNKNOWN is
an error: could not tell), a Plan one per step, anything else one case for the
command. A run that failed before producing a result is one error case, so CI
always finds the file.
"""

from __future__ import annotations

import socket
from datetime import datetime
from typing import TYPE_CHECKING

from e2ee_ops.errors import redact
from e2ee_ops.render import printable
from e2ee_ops.status import Plan, Report, Status

if TYPE_CHECKING:
    from junitparser import TestCase

__all__ = ["junit_xml"]

SUITE = "e2ee-ops"


def _case(name: str, classname: str, status: Status | None, message: str, time: float) -> TestCase:
    from junitparser import Error, Failure, TestCase

    # XML 1.0 cannot even carry most control characters: they are shown escaped.
    case = TestCase(name=printable(name) or "result", classname=classname, time=round(time, 3))
    message = printable(redact(message))
    if status in (Status.WARNING, Status.CRITICAL):
        case.result = [Failure(message=message, type_=status.value)]
    elif status is Status.UNKNOWN:
        case.result = [Error(message=message, type_=status.value)]
    return case


def _transcript(result: object | None) -> str:
    if isinstance(result, Report):
        lines = [f"{f.status.value} {f.name}: {f.summary}" for f in result.findings]
    elif isinstance(result, Plan):
        lines = [f"{s.description}: {s.outcome or '-'}" for s in result.steps]
    else:
        return ""
    return "\n".join(printable(line) for line in [*lines, result.one_line_summary()])


def _hostname() -> str:
    return socket.gethostname().strip() or "localhost"


def junit_xml(
    *,
    command: str,
    result: object | None,
    error: str | None,
    started: datetime,
    elapsed: float,
) -> bytes:
    """The JUnit document of one run: its `result`, or the `error` that ended it."""
    from junitparser import Properties, SystemErr, SystemOut, TestSuite

    command = command or "e2ee-ops"
    classname = f"{SUITE}.{'.'.join(command.split())}"
    cases: list[TestCase] = []
    if error is not None:
        cases.append(_case(command, classname, Status.UNKNOWN, error, elapsed))
    elif isinstance(result, Report):
        share = elapsed / max(len(result.findings), 1)
        for f in result.findings:
            cases.append(_case(f.name, classname, f.status, f.summary, share))
        if not result.findings:
            cases.append(_case(command, classname, Status.OK, result.one_line_summary(), elapsed))
    elif isinstance(result, Plan):
        share = elapsed / max(len(result.steps), 1)
        for number, step in enumerate(result.steps, start=1):
            text = step.description + (f": {step.outcome}" if step.outcome else "")
            cases.append(
                _case(f"{number}. {step.description}", classname, step.status, text, share)
            )
    else:
        cases.append(_case(command, classname, Status.OK, "", elapsed))

    # junitparser has no type hints: its untyped calls are confined to this block.
    suite = TestSuite(f"{SUITE} {command}")
    suite.append(Properties())  # type: ignore[no-untyped-call]
    suite.add_testcases(cases)
    suite.timestamp = started.replace(tzinfo=None, microsecond=0).isoformat()
    suite.hostname = _hostname()
    suite.time = round(elapsed, 3)
    # The strict schema has no output per case: every finding's sentence goes here.
    out, err = redact(_transcript(result)), printable(redact(error or ""))
    suite.append(SystemOut(out))  # type: ignore[no-untyped-call]
    suite.append(SystemErr(err))  # type: ignore[no-untyped-call]
    return suite.tostring()  # type: ignore[no-any-return,no-untyped-call]
