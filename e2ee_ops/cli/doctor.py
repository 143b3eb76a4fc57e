"""`e2ee-ops doctor`: every read-only check at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish


def doctor(
    ctx: typer.Context,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", metavar="FILE", dir_okay=False, help="Also write JUnit XML here."),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Run every read-only check concurrently (API health, metrics, Redis, PostgreSQL,
    schema at Alembic head, feature flag, OTPK pools, delivery lag); exit code by the worst."""
    from e2ee_ops.cli.targets import doctor_targets
    from e2ee_ops.procedures.doctor import run_doctor

    env = app_context(ctx)
    finish(
        ctx, run_doctor(doctor_targets(env), timeout=env.remaining()), output=output, junit=junit
    )
