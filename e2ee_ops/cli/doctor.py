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
    from e2ee_ops.adapters.migrations import Migrations
    from e2ee_ops.cli.targets import api_clients, database, redis_probe
    from e2ee_ops.procedures.doctor import DoctorTargets, run_doctor

    env = app_context(ctx)
    s = env.settings
    db = database(env, required=False)
    targets = DoctorTargets(
        public_apis=api_clients(env, None),
        admin_apis=api_clients(env, "admin"),
        redis=redis_probe(env),
        db=db,
        migrations=Migrations(s.alembic.config, s.postgres.url) if s.postgres.url else None,
        thresholds=s.thresholds,
    )
    report = run_doctor(targets, timeout=env.remaining())
    finish(ctx, report, output=output)
