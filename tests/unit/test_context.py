from __future__ import annotations

import io
import signal
import time

import pytest
import typer

from e2ee_ops.cli.main import app
from e2ee_ops.context import AppContext, hard_deadline, make_console
from e2ee_ops.errors import TimedOutError
from e2ee_ops.render import OutputFormat
from e2ee_ops.status import ExitCode, Finding, Report, Status


def test_emit_renders_on_stdout_and_returns_the_exit_code() -> None:
    out, err = io.StringIO(), io.StringIO()
    ctx = AppContext.create(stdout=out, stderr=err, environ={}, output=OutputFormat.NAGIOS)
    report = Report(title="t", findings=[Finding("a", Status.WARNING, 1, "a is high")])
    assert ctx.emit(report) == ExitCode.WARNING
    assert out.getvalue() == "E2EE-OPS T WARNING - a is high | 'a'=1\n"
    ctx.progress("waiting for Redis (Bearer Abcdef123456)")
    assert err.getvalue() == "waiting for Redis (Bearer **********)\n"


def test_no_color_environment_reaches_the_console() -> None:
    assert make_console(io.StringIO(), {"NO_COLOR": "1"}).no_color
    assert not make_console(io.StringIO(), {}).no_color


def test_hard_deadline_raises_and_restores_an_outer_timer() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        with pytest.raises(TimedOutError, match="gave up after 0.1 s"), hard_deadline(0.1):
            time.sleep(5)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < remaining <= 5.0  # the outer timer still runs
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []


def test_every_command_and_group_has_help_text() -> None:
    root = typer.main.get_command(app)

    def walk(command: object, path: str) -> None:
        help_text = getattr(command, "help", None) or getattr(command, "short_help", None)
        assert help_text, f"{path} has no help text"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(root, "e2ee-ops")
