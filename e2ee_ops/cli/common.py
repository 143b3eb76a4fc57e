"""Helpers every command module shares: the context and the output option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.render import OutputFormat, Result

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


def finish(
    ctx: typer.Context, result: Result, *, output: OutputFormat | None = None, title: str = ""
) -> NoReturn:
    """Render `result` on stdout and exit with the code its status calls for."""
    env = app_context(ctx)
    if output is not None:
        env.output = output
    raise typer.Exit(int(env.emit(result, title=title)))
