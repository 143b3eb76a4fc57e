"""`e2ee-ops alerts`: Prometheus rules from the thresholds; evaluate every threshold now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import JunitOption, OutputOption, TextfileOption, app_context, finish

app = typer.Typer(
    name="alerts",
    help="Monitoring (runbook: Monitoring and Alerting Setup): Prometheus rules from the "
    "thresholds, and every threshold evaluated now.",
    no_args_is_help=True,
)


def _write_or_print(ctx: typer.Context, text: str, out: Path | None) -> None:
    env = app_context(ctx)
    if out is None:
        env.data.write(text)
        env.data.flush()
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        from e2ee_ops.errors import ActionFailed

        raise ActionFailed(f"cannot write {out} ({exc.strerror})") from None
    env.progress(f"wrote {out}")


OutOption = Annotated[
    Path | None,
    typer.Option("--out", metavar="FILE", dir_okay=False, help="Write here, not stdout."),
]


@app.command("rules")
def rules(
    ctx: typer.Context,
    out: OutOption = None,
    job: Annotated[
        str,
        typer.Option("--job", help="The Prometheus scrape job of the API instances."),
    ] = "e2ee-api",
) -> None:
    """Print (or write) a Prometheus rule file with every critical and warning threshold
    of the runbook, taken from the configured thresholds; valid for `promtool check rules`."""
    from e2ee_ops.procedures.alerts import rules_yaml

    _write_or_print(ctx, rules_yaml(app_context(ctx).settings.thresholds, job), out)


@app.command("dashboard")
def dashboard(ctx: typer.Context, out: OutOption = None) -> None:
    """Print (or write) a Grafana dashboard (JSON, for file provisioning) with a panel per
    runbook metric, its thresholds drawn from the same configuration as `alerts rules`."""
    from e2ee_ops.procedures.alerts_dashboard import dashboard_json

    _write_or_print(ctx, dashboard_json(app_context(ctx).settings.thresholds), out)


@app.command("check")
def check(
    ctx: typer.Context,
    junit: JunitOption = None,
    textfile: TextfileOption = None,
    output: OutputOption = None,
) -> None:
    """Evaluate every alert threshold now against each API instance's /metrics: rates
    (SSE failures, delivery p99, HTTP errors) from Prometheus when prometheus.url is
    set, else between two samples alerts.sample_interval_seconds apart; levels from
    /metrics; one line each; exit code by the worst."""
    from e2ee_ops.cli.targets import api_clients, prometheus
    from e2ee_ops.procedures.alerts import check_alerts

    env = app_context(ctx)
    report = check_alerts(
        apis=api_clients(env, None),
        thresholds=env.settings.thresholds,
        sample_interval=env.settings.alerts.sample_interval_seconds,
        prometheus=prometheus(env),
        rate_window=env.settings.prometheus.rate_window,
        timeout=env.remaining(),
        journal=env.journal(),
    )
    finish(ctx, report, output=output)
