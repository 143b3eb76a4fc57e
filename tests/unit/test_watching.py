"""Watches: a live view on a terminal, lines a program can read when piped."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from rich.console import Console

from e2ee_ops.cli.common import show_refreshes, ticker
from e2ee_ops.context import AppContext
from e2ee_ops.render import OutputFormat
from e2ee_ops.status import Finding, Report, Status


@dataclass(frozen=True)
class Tick:
    done: int

    @property
    def message(self) -> str:
        return f"{self.done} done"


def _reports() -> list[Report]:
    return [
        Report("redis check", [Finding("redis ping", status, 1, "pong")])
        for status in (Status.OK, Status.WARNING)
    ]


def test_piped_ticks_are_json_lines_and_a_terminal_gets_a_transient_live_line() -> None:
    piped = io.StringIO()
    env = AppContext.create(stdout=io.StringIO(), stderr=piped, environ={})
    with ticker(env) as tick:
        tick(Tick(1))
        tick(Tick(2))
    assert [json.loads(line) for line in piped.getvalue().splitlines()] == [
        {"kind": "tick", "done": 1, "message": "1 done"},
        {"kind": "tick", "done": 2, "message": "2 done"},
    ]
    screen = io.StringIO()
    env.err = Console(file=screen, force_terminal=True, width=60)
    with ticker(env) as tick:
        tick(Tick(3))
    assert "3 done" in screen.getvalue() and '"kind"' not in screen.getvalue()


def test_refreshes_as_json_lines_or_every_frame_or_live() -> None:
    out = io.StringIO()
    env = AppContext.create(stdout=out, stderr=io.StringIO(), environ={})
    last = show_refreshes(env, iter(_reports()), OutputFormat.JSON)
    assert last.status is Status.WARNING
    assert [json.loads(line)["status"] for line in out.getvalue().splitlines()] == [
        "OK",
        "WARNING",
    ]
    piped = io.StringIO()
    env = AppContext.create(stdout=piped, stderr=io.StringIO(), environ={})
    show_refreshes(env, iter(_reports()), OutputFormat.TABLE)
    assert piped.getvalue().count("redis check") == 2
    screen = io.StringIO()
    env.out = Console(file=screen, force_terminal=True, width=80)
    show_refreshes(env, iter(_reports()), OutputFormat.TABLE)
    assert "WARNING" in screen.getvalue()


def test_progress_notes_stay_one_line_whatever_the_width() -> None:
    err = io.StringIO()
    env = AppContext.create(stdout=io.StringIO(), stderr=err, environ={"COLUMNS": "40"})
    note = "wrote " + "/very/long/path" * 10 + " and more words after it"
    env.progress(note)
    assert err.getvalue() == note + "\n"
