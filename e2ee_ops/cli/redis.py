"""`e2ee-ops redis`: Redis outage: detect, recover and watch the pub/sub relay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from e2ee_ops.cli.acting import carry_out
from e2ee_ops.cli.common import (
    ExecuteOption,
    JunitOption,
    OutputOption,
    TextfileOption,
    YesOption,
    app_context,
    finish,
    watch_live,
)

app = typer.Typer(
    name="redis",
    help="Redis outage (runbook: Redis Outage Procedures): detect, recover, watch.",
    no_args_is_help=True,
)


@app.command("check")
def check(
    ctx: typer.Context,
    junit: JunitOption = None,
    textfile: TextfileOption = None,
    output: OutputOption = None,
) -> None:
    """Gather every detection signal: /dm/metrics redis_status, PING and INFO, one SSE
    heartbeat's relay_lag, and messages stored but not delivered; under Sentinel also the
    quorum (CKQUORUM), the primary a quorum names and the replicas. Exit code by the worst."""
    from e2ee_ops.cli.targets import redis_targets
    from e2ee_ops.procedures.redis_outage import check_redis

    env = app_context(ctx)
    report = check_redis(redis_targets(env), timeout=env.remaining())
    finish(ctx, report, output=output)


@app.command("recover")
def recover(
    ctx: typer.Context,
    execute: ExecuteOption = False,
    yes: YesOption = False,
    force: Annotated[
        bool, typer.Option("--force", help="Restart Redis even if it answers PING.")
    ] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            help="Start of the outage window (ISO time, UTC if no zone); "
            "default: the oldest undelivered message of the last hour.",
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Restart Redis (if down), wait for PING, watch metrics until relay_lag is false,
    send a canary over SSE, compare stored vs delivered, record the outage. Under Sentinel:
    SENTINEL FAILOVER if the sentinels did not fail over, then the same checks, then the
    failed node restarted and verified back as a replica."""
    from datetime import UTC

    from e2ee_ops.cli.targets import redis_targets
    from e2ee_ops.procedures.redis_outage import recover_redis

    env = app_context(ctx)
    targets = redis_targets(env, with_restarter=True)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    carry_out(
        ctx,
        command="redis recover",
        plan=recover_redis(targets, execute=False, force=force),
        execute=execute,
        yes=yes,
        act=lambda: recover_redis(
            targets, execute=True, force=force, since=since, journal=env.journal()
        ),
        output=output,
    )


@app.command("watch")
def watch(
    ctx: typer.Context,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes.")
    ] = 5.0,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many refreshes.")
    ] = None,
    output: OutputOption = None,
) -> None:
    """The detection signals, refreshed until interrupted (Ctrl-C): a live view on a
    terminal; piped, every refresh in full (with --output json, one object per line)."""
    from e2ee_ops.cli.targets import redis_targets
    from e2ee_ops.procedures.redis_outage import check_redis

    targets = redis_targets(app_context(ctx))
    watch_live(ctx, lambda: check_redis(targets, timeout=interval * 4), interval, count, output)
