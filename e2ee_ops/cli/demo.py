"""`e2ee-ops demo`: the whole runbook, walked through on the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import app_context
from e2ee_ops.status import ExitCode


def demo(
    ctx: typer.Context,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the sandbox running afterwards.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", file_okay=False, help="Sandbox directory (default: a temp dir)."
        ),
    ] = None,
    redis: Annotated[
        str,
        typer.Option(
            "--redis",
            help="single (default): stop and restart one Redis; sentinel: a failover drill "
            "(SIGKILL the primary under Sentinel, recover, the node rejoins as replica).",
        ),
    ] = "single",
) -> None:
    """Start the sandbox, seed realistic data and walk through every runbook section:
    detect, act, verify. Exits 2 if any verification fails."""
    from e2ee_ops.embedded import require_embedded

    require_embedded("demo")  # before anything is imported, started or created
    from e2ee_ops.demo import run_demo
    from e2ee_ops.sandbox import REDIS_MODES

    if redis not in REDIS_MODES:
        raise typer.BadParameter(f"one of {', '.join(REDIS_MODES)}", param_hint="--redis")

    env = app_context(ctx)
    results = run_demo(
        state_dir=state_dir,
        keep=keep,
        redis_mode=redis,
        # Lines are never wrapped: a command line must stay one line in a log.
        say=lambda m: env.out.print(m, markup=False, highlight=False, soft_wrap=True),
    )
    failed = [r for r in results if not r.ok]
    env.out.print(
        f"\n{len(results) - len(failed)} of {len(results)} steps verified"
        + (f"; FAILED: {', '.join(r.title for r in failed)}" if failed else ""),
        markup=False,
        highlight=False,
    )
    raise typer.Exit(int(ExitCode.CRITICAL if failed else ExitCode.OK))
