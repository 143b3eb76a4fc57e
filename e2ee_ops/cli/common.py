"""Helpers every command module shares: the context and the output option."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.render import OutputFormat, Result
from e2ee_ops.status import Report

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


def finish(
    ctx: typer.Context,
    result: Result,
    *,
    output: OutputFormat | None = None,
    title: str = "",
    junit: Path | None = None,
) -> NoReturn:
    """Render `result` on stdout (a report also as JUnit XML into `junit`) and exit with
    the code its status calls for."""
    env = app_context(ctx)
    if junit is not None and isinstance(result, Report):
        from e2ee_ops.render import to_junit

        junit.write_text(to_junit(result), encoding="utf-8")
    if output is not None:
        env.output = output
    raise typer.Exit(int(env.emit(result, title=title)))


def watch_live(
    ctx: typer.Context, check: Callable[[], Report], interval: float, count: int | None
) -> NoReturn:
    """Show `check()` live, refreshed every `interval` seconds (`count` times at most, else
    until interrupted); exit with the code the last report calls for."""
    from rich.live import Live

    from e2ee_ops.render import rich_renderable

    env = app_context(ctx)
    env.unbounded()  # runs until interrupted or --count
    report = check()
    refreshes = 1
    with Live(rich_renderable(report), console=env.out, auto_refresh=False) as live:
        while count is None or refreshes < count:
            time.sleep(interval)
            report = check()
            live.update(rich_renderable(report), refresh=True)
            refreshes += 1
    raise typer.Exit(int(report.exit_code))
