"""`e2ee-ops incident`: open, log, status and close an incident, with a timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish
from e2ee_ops.context import AppContext

if TYPE_CHECKING:
    from e2ee_ops.procedures.incident import Channels

app = typer.Typer(
    name="incident",
    help="Incident response (runbook: Incident Response): open, log, status and close, "
    "with a timeline every command's plan and outcome joins while it is open.",
    no_args_is_help=True,
)


def channels(env: AppContext) -> Channels:
    """The configured announcement channels, wired to the notify adapter."""
    from e2ee_ops.adapters.incident_notify import pagerduty_event, post_webhook
    from e2ee_ops.procedures.incident import Channels

    cfg = env.settings.incident
    found = Channels()
    if cfg.webhook is not None:
        url = cfg.webhook.resolve(key="incident.webhook", environ=env.environ)
        found.webhook = lambda text: post_webhook(url, text, timeout=cfg.timeout_seconds)
    pd = cfg.pagerduty
    if pd is not None:
        key = pd.routing_key.resolve(key="incident.pagerduty.routing_key", environ=env.environ)

        def page(action: str, dedup: str, summary: str, severity: str, details: object) -> None:
            pagerduty_event(
                pd.events_url,
                key,
                action=action,
                dedup_key=dedup,
                summary=summary,
                severity=severity,
                details=details if isinstance(details, dict) else {},
                timeout=cfg.timeout_seconds,
            )

        found.pager = page
    return found


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
    from e2ee_ops.procedures.incident import open_incident

    env = app_context(ctx)
    plan = open_incident(
        journal=env.journal(),
        severity=severity.upper(),
        title=title,
        drill=drill,
        channels=channels(env),
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
    from e2ee_ops.procedures.incident import close_incident

    env = app_context(ctx)
    plan = close_incident(
        journal=env.journal(), resolution=resolution, channels=channels(env), now=env.clock()
    )
    finish(ctx, plan, output=output)
