"""Helpers every command module shares: the context, the shared options, rendering the
result and exiting, and showing a watch."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.errors import redact
from e2ee_ops.journal import OUTCOME
from e2ee_ops.render import OutputFormat, Result, render, rich_renderable, to_json_data
from e2ee_ops.status import Report, Status

# Upper bounds of numeric options. Beyond them a value is a typo, and it would overflow
# a timer, a timestamp or a BIGINT before it meant anything: such input is a usage
# error (exit 64) with a sentence, never an internal error.
MAX_SECONDS = 7 * 24 * 3600.0  # --timeout, --interval, --watch-timeout: a week
MAX_DAYS = 36_500.0  # --inactive-days: a century
MAX_ID = 2**63 - 1  # account ids are PostgreSQL BIGINTs
MAX_COUNT = 1_000_000  # --limit, --count, --steps, --threshold

# Add to any data command so `--output` works after the subcommand too:
#     def check(ctx: typer.Context, output: OutputOption = None) -> None:
OutputOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="Output format (overrides the global --output).",
        show_default=False,
    ),
]


# Where the outcome also goes; read from the command line by `cli/outcome.py`, which
# writes them even when the run fails before these options are parsed.
JunitOption = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="FILE",
        dir_okay=False,
        help="Also write the outcome as JUnit XML here (always, also when the run fails).",
        show_default=False,
    ),
]
TextfileOption = Annotated[
    Path | None,
    typer.Option(
        "--textfile",
        metavar="FILE",
        dir_okay=False,
        help="Also write the outcome in Prometheus text format here (for node_exporter's "
        "textfile collector; written atomically, also when the run fails).",
        show_default=False,
    ),
]


# The two options of every command that acts (plan by default, --execute to act).
ExecuteOption = Annotated[
    bool, typer.Option("--execute", help="Act; without it only the plan is shown.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the top-level callback put in `ctx.obj`."""
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):  # only when a sub-app is invoked on its own
        obj = AppContext.create()
        ctx.find_root().obj = obj
    return obj


# What of a report's data its journal record keeps (the post-mortem counts from these).
EVIDENCE_KEYS = ("stuck_ids", "stuck_total", "remediated", "still_stuck")


def journal_finding(env: AppContext, ctx: typer.Context, report: Report) -> None:
    """While an incident is open, a read-only command's verdict joins its timeline: the
    evidence that ticks its response steps (cron runs between incidents stay out)."""
    if report.title.startswith("incident"):
        return  # reading the timeline is not an observation of the service
    journal = env.journal()
    if journal.open_incident_id() is None:
        return
    command = " ".join(ctx.command_path.split()[1:]) or report.title
    journal.append(
        OUTCOME,
        command=command,
        data={
            "status": report.status.name,
            "summary": report.one_line_summary(),
            "failing": [f.summary for f in report.findings if f.status is not Status.OK][:20],
            **{k: report.data[k] for k in EVIDENCE_KEYS if k in report.data},
        },
    )


def finish(
    ctx: typer.Context, result: Result, *, output: OutputFormat | None = None, title: str = ""
) -> NoReturn:
    """Render `result` on stdout and exit with the code its status calls for (the JUnit
    file and the textfile are written by `cli/outcome.py`, also when a run fails)."""
    env = app_context(ctx)
    if isinstance(result, Report):
        journal_finding(env, ctx, result)
    if output is not None:
        env.output = output
    raise typer.Exit(int(env.emit(result, title=title)))


def watch_live(
    ctx: typer.Context,
    check: Callable[[], Report],
    interval: float,
    count: int | None,
    output: OutputFormat | None = None,
) -> NoReturn:
    """Show `check()` refreshed every `interval` seconds (`count` times at most, else until
    interrupted): live on a terminal, every refresh when piped, JSON Lines with
    `--output json` (`show_refreshes`); exit with the code the last report calls for."""
    env = app_context(ctx)
    env.unbounded()  # runs until interrupted or --count

    def refreshes() -> Iterator[Report]:
        refreshed = 0
        while count is None or refreshed < count:
            if refreshed:
                time.sleep(interval)
            yield check()
            refreshed += 1

    last = show_refreshes(env, refreshes(), output or env.output)
    env.last_result = last
    raise typer.Exit(int(last.exit_code))


# --------------------------------------------------------------------------- watching
# Commands that keep watching: a live view on a terminal, and lines a program can read
# (JSON Lines, or one rendering per refresh) when piped. Rich's Live redraws in place on
# a terminal; on a pipe it would print only its last frame.


def json_line(stream: IO[str], data: dict[str, Any]) -> None:
    """One JSON object on one line (JSON Lines), flushed at once."""
    stream.write(redact(json.dumps(data, ensure_ascii=False, separators=(",", ":"))) + "\n")
    stream.flush()


def show_refreshes(env: AppContext, refreshes: Iterable[Report], fmt: OutputFormat) -> Report:
    """Show each report as it comes; return the last. Tables on a terminal are a live
    view; JSON is one object per refresh (JSON Lines); anything else, or a table on a
    pipe, is printed in full at every refresh."""
    last: Report | None = None
    if fmt is OutputFormat.TABLE and env.out.is_terminal:
        from rich.live import Live

        live: Live | None = None
        try:
            for report in refreshes:
                last = report
                if live is None:
                    live = Live(
                        rich_renderable(report, width=env.out.width),
                        console=env.out,
                        auto_refresh=False,
                    )
                    live.start(refresh=True)
                else:
                    live.update(rich_renderable(report, width=env.out.width), refresh=True)
        finally:
            if live is not None:
                live.stop()
    else:
        for report in refreshes:
            last = report
            if fmt is OutputFormat.JSON:
                json_line(env.data, to_json_data(report))
            else:
                render(report, fmt, env.out)
    assert last is not None, "a watch shows at least one refresh"
    return last


@contextmanager
def ticker(env: AppContext) -> Iterator[Callable[[Any], None]]:
    """Progress of a watch on stderr: one live line on a terminal, else one JSON object
    per tick (`{"kind": "tick", ..., "message": ...}`). A tick is a dataclass with a
    `message` property."""
    if env.err.is_terminal:
        from rich.live import Live
        from rich.text import Text

        with Live(Text(""), console=env.err, transient=True, auto_refresh=False) as live:
            yield lambda tick: live.update(Text(redact(tick.message)), refresh=True)
        return

    def line(tick: Any) -> None:
        json_line(
            env.err.file, {"kind": "tick", **dataclasses.asdict(tick), "message": tick.message}
        )

    yield line
