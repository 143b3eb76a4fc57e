"""`e2ee-ops incident`: open, log, status and close an incident, with a timeline."""

from __future__ import annotations

from typing import Annotated

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish

app = typer.Typer(
    name="incident",
    help="Incident response (runbook: Incident Response): open, log, status and close, "
    "with a timeline every command's plan and outcome joins while it is open.",
    no_args_is_help=True,
)


@app.command("open")
def open_(
    ctx: typer.Context,
    severity: Annotated[
        str, typer.Option("--severity", "-s", help="P0 (critical) to P3 (low), as in the runbook.")
    ],
    title: Annotated[str, typer.Option("--title", "-t", help="What is happening, in one line.")],
    drill: Annotated[
        bool, typer.Option("--drill", help="An exercise: marked [DRILL] everywhere, never paged.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Open an incident: record it, post it to the incident channel and page PagerDuty.
    Until it is closed, every command's plan and outcome joins its timeline."""
    from e2ee_ops.cli.targets import incident_channels
    from e2ee_ops.procedures.incident import open_incident

    env = app_context(ctx)
    plan = open_incident(
        journal=env.journal(),
        severity=severity.upper(),
        title=title,
        drill=drill,
        channels=incident_channels(env),
        now=env.clock(),
    )
    finish(ctx, plan, output=output)


@app.command("log")
def log(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="What happened or was decided.")],
    step: Annotated[
        str | None,
        typer.Option(
            "--step",
            help="Mark a response step done: acknowledge, assess, contain, resolve, "
            "communicate, postmortem.",
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Add a note to the open incident's timeline."""
    from e2ee_ops.procedures.incident import log_incident

    env = app_context(ctx)
    finish(ctx, log_incident(journal=env.journal(), text=text, step=step), output=output)


@app.command("status")
def status(
    ctx: typer.Context,
    incident: Annotated[
        str | None,
        typer.Option("--incident", metavar="ID", help="Default: the open one, else the last."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """The incident's timeline and which response steps are still open (exit 1 if any)."""
    from e2ee_ops.procedures.incident import incident_status

    env = app_context(ctx)
    finish(ctx, incident_status(journal=env.journal(), incident_id=incident), output=output)


@app.command("close")
def close(
    ctx: typer.Context,
    resolution: Annotated[str, typer.Option("--resolution", "-r", help="How it was resolved.")],
    output: OutputOption = None,
) -> None:
    """Close the open incident, post the resolution and resolve the PagerDuty incident."""
    from e2ee_ops.cli.targets import incident_channels
    from e2ee_ops.procedures.incident import close_incident

    env = app_context(ctx)
    plan = close_incident(
        journal=env.journal(),
        resolution=resolution,
        channels=incident_channels(env),
        now=env.clock(),
    )
    finish(ctx, plan, output=output)
