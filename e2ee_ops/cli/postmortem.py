"""`e2ee-ops postmortem`: Post-mortem checklist in Markdown, prefilled with what was measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import app_context

app = typer.Typer(
    name="postmortem",
    help="Post-mortem checklists (runbook: the post-mortem checklists) in Markdown, "
    "prefilled with what the journal measured.",
    no_args_is_help=True,
)


@app.command("checklist")
def checklist(
    ctx: typer.Context,
    incident: Annotated[
        str | None,
        typer.Option(
            "--incident",
            metavar="ID",
            help="Default: the open incident, else the last one, else the last Redis outage.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", dir_okay=False, help="Write here, not stdout."),
    ] = None,
) -> None:
    """The runbook's checklist for the incident's kind (Redis outage, abuse burst,
    general) in Markdown; only what a command verified is ticked."""
    from e2ee_ops.cli.targets import database
    from e2ee_ops.errors import ActionFailed
    from e2ee_ops.procedures.postmortem import build_checklist

    env = app_context(ctx)
    result = build_checklist(
        journal=env.journal(), incident_id=incident, db=database(env, required=False)
    )
    if out is None:
        env.data.write(result.markdown)
        env.data.flush()
        return
    try:
        out.write_text(result.markdown, encoding="utf-8")
    except OSError as exc:
        raise ActionFailed(f"cannot write {out} ({exc.strerror})") from None
    env.progress(f"wrote {out}")
