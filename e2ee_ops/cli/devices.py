"""`e2ee-ops devices`: stuck devices (runbook: Stuck Device Remediation)."""

from __future__ import annotations

from typing import Annotated

import typer

from e2ee_ops.cli.common import (
    MAX_COUNT,
    MAX_DAYS,
    MAX_ID,
    MAX_SECONDS,
    JunitOption,
    OutputOption,
    TextfileOption,
    YesOption,
    app_context,
    finish,
)
from e2ee_ops.errors import UsageError

app = typer.Typer(
    name="devices",
    help="Stuck devices (runbook: Stuck Device Remediation): low one-time prekey pools, "
    "stale signed prekeys, inactivity; remind the owners, watch them refill.",
    no_args_is_help=True,
)

CHANNELS = ("push", "email", "webhook")


def _channels(text: str) -> list[str]:
    channels = [c.strip().lower() for c in text.split(",") if c.strip()]
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise UsageError(f"--notify {text!r}: choose from {', '.join(CHANNELS)} (comma-separated)")
    return list(dict.fromkeys(channels))


@app.command("stuck")
def stuck(
    ctx: typer.Context,
    user: Annotated[
        int | None,
        typer.Option(
            "--user", metavar="ACCOUNT_ID", min=1, max=MAX_ID, help="Only this user's devices."
        ),
    ] = None,
    threshold: Annotated[
        int | None,
        typer.Option(
            "--threshold",
            min=0,
            max=MAX_COUNT,
            help="List pools below this many prekeys (default: thresholds.otpk_warning, 10); "
            "below thresholds.otpk_critical (5) is CRITICAL.",
        ),
    ] = None,
    inactive_days: Annotated[
        float | None,
        typer.Option(
            "--inactive-days",
            min=0.0,
            max=MAX_DAYS,
            help="Not seen for longer is listed (default: thresholds.device_inactive_days).",
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=MAX_COUNT, help="Show at most this many, worst first."),
    ] = 50,
    pools_only: Annotated[
        bool,
        typer.Option(
            "--pools-only",
            help="Only prekey pools under the thresholds (the runbook's query): skip stale "
            "signed prekeys and inactive devices.",
        ),
    ] = False,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            metavar="CHANNELS",
            help="Remind each owner through push,email,webhook (plan unless --execute).",
        ),
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="With --notify: send; without, only the plan.")
    ] = False,
    yes: YesOption = False,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Follow the listed devices until they refill or time out."),
    ] = False,
    watch_timeout: Annotated[
        float,
        typer.Option(
            "--watch-timeout", min=0.0, max=MAX_SECONDS, help="Seconds --watch waits at most."
        ),
    ] = 900.0,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.1, max=MAX_SECONDS, help="Seconds between --watch checks."
        ),
    ] = 30.0,
    junit: JunitOption = None,
    textfile: TextfileOption = None,
    output: OutputOption = None,
) -> None:
    """Active devices with a one-time prekey pool under the thresholds, a signed prekey
    older than the maximum age, or not seen for a while; worst first, exit code by the
    worst. --notify reminds their owners (once per device and channel per window, safe
    under concurrent cron runs); --watch follows them until they refill."""
    from e2ee_ops.cli.acting import carry_out
    from e2ee_ops.cli.targets import devices_db, notifiers
    from e2ee_ops.procedures import devices as procedure
    from e2ee_ops.status import Plan

    env = app_context(ctx)
    if notify and watch:
        raise UsageError("--notify and --watch are two steps: run them as two commands")
    if execute and not notify:
        raise UsageError("--execute only applies to --notify")
    settings = env.settings
    options = procedure.stuck_options(
        settings.thresholds,
        threshold=threshold,
        inactive_days=inactive_days,
        user_id=user,
        limit=limit,
        pools_only=pools_only,
    )
    db = devices_db(env)
    if watch:
        from e2ee_ops.cli.common import ticker

        env.unbounded()  # --watch-timeout bounds it
        with ticker(env) as tick:
            report = procedure.watch_stuck_devices(
                db=db,
                options=options,
                timeout_seconds=watch_timeout,
                interval_seconds=interval,
                on_tick=tick,
            )
        finish(ctx, report, output=output)
    if not notify:
        # Every stuck id only while an incident is open: its timeline counts remediation.
        every_id = env.journal().open_incident_id() is not None
        report = procedure.find_stuck_devices(db=db, options=options, every_id=every_id)
        finish(ctx, report, output=output)
    channels = _channels(notify)
    n = settings.notifiers
    built = notifiers(env, channels)

    def run(do: bool) -> Plan:
        return procedure.notify_stuck_devices(
            db=db,
            notifiers=built,
            options=options,
            notify=procedure.NotifyOptions(
                channels=channels,
                dedup_window_hours=n.dedup_window_hours,
                lock_wait_seconds=n.lock_wait_seconds,
                progress=env.progress,
            ),
            execute=do,
        )

    carry_out(
        ctx,
        command=f"devices stuck --notify {','.join(channels)}",
        plan=run(False),
        execute=execute,
        yes=yes,
        act=lambda: run(True),
        outcome_keys=("notified",),
        output=output,
    )
