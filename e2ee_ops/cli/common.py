"""Helpers every command module shares: the context and the output option."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.render import OutputFormat, Result

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
    ctx: typer.Context, result: Result, *, output: OutputFormat | None = None, title: str = ""
) -> NoReturn:
    """Render `result` on stdout and exit with the code its status calls for."""
    env = app_context(ctx)
    if output is not None:
        env.output = output
    raise typer.Exit(int(env.emit(result, title=title)))
