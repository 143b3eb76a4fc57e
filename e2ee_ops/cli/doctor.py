"""`e2ee-ops doctor`: every read-only check at once."""

from __future__ import annotations

import typer

from e2ee_ops.cli.common import JunitOption, OutputOption, TextfileOption, app_context, finish


def doctor(
    ctx: typer.Context,
    junit: JunitOption = None,
    textfile: TextfileOption = None,
    output: OutputOption = None,
) -> None:
    """Run every read-only check concurrently (API health, metrics, Redis, PostgreSQL,
    schema at Alembic head, feature flag, OTPK pools, delivery lag); exit code by the worst."""
    from e2ee_ops.cli.targets import doctor_targets
    from e2ee_ops.procedures.doctor import run_doctor

    env = app_context(ctx)
    finish(ctx, run_doctor(doctor_targets(env), timeout=env.remaining()), output=output)
