"""Helpers every command module shares: the context, the output option, planned groups."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.errors import NotImplementedYet
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


def planned_group(name: str, *, summary: str, planned: list[str]) -> typer.Typer:
    """A command group that exists in the command map but has no commands yet.

    Invoked bare it fails with NotImplementedYet (exit 3, "could not tell"), so a
    cron job pointing at it never believes it succeeded.
    """
    planned_text = ", ".join(planned)
    group = typer.Typer(
        name=name,
        help=f"{summary} Not implemented yet (planned: {planned_text}).",
        short_help=f"{summary} [not implemented yet]",
        no_args_is_help=False,
    )

    @group.callback(invoke_without_command=True)
    def _not_yet(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            raise NotImplementedYet(
                f"`e2ee-ops {name}` is not implemented yet",
                hint=f"planned commands: {planned_text}",
            )

    return group


def not_implemented(command: str) -> NoReturn:
    raise NotImplementedYet(f"`e2ee-ops {command}` is not implemented yet")
