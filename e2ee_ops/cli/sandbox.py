"""`e2ee-ops sandbox`: the whole stack on embedded servers, for trying commands safely."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from e2ee_ops.cli.common import OutputOption, app_context, finish
from e2ee_ops.errors import ActionFailed

app = typer.Typer(
    name="sandbox",
    help="Embedded PostgreSQL, Redis and the reference server, seeded and configured.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        file_okay=False,
        help="Where the sandbox keeps its data, logs, secrets and config.yaml.",
    ),
]
DEFAULT_DIR = Path(".sandbox")


@dataclass(frozen=True)
class ServiceRow:
    service: str
    state: str
    pid: str
    address: str


def _rows(state_dir: Path) -> list[ServiceRow]:
    from e2ee_ops.sandbox import status

    return [
        ServiceRow(s.name, "running" if s.running else "stopped", str(s.pid or "-"), s.address)
        for s in status(state_dir)
    ]


def _guard(action: str, call: object) -> None:
    from e2ee_ops.embedded import EmbeddedError

    try:
        assert callable(call)
        call()
    except EmbeddedError as exc:
        raise ActionFailed(f"sandbox {action} failed: {exc}") from None


@app.command("up")
def up(
    ctx: typer.Context,
    state_dir: StateDir = DEFAULT_DIR,
    api_instances: Annotated[
        int,
        typer.Option(
            "--api-instances",
            min=1,
            max=16,
            help="How many reference server instances (a fleet on one PostgreSQL and Redis).",
        ),
    ] = 2,
    redis: Annotated[
        str,
        typer.Option(
            "--redis",
            help="single: one redis-server; sentinel: a primary, one replica and three "
            "sentinels (quorum 2), with redis.sentinel in the config.",
        ),
    ] = "single",
    output: OutputOption = None,
) -> None:
    """Start PostgreSQL, Redis and N reference server instances; migrate; seed an admin,
    two canary accounts and a demo user; write STATE_DIR/config.yaml listing every
    instance in api.base_urls."""
    from e2ee_ops.embedded import require_embedded

    require_embedded("sandbox up")
    from e2ee_ops import sandbox

    if redis not in sandbox.REDIS_MODES:
        raise typer.BadParameter(f"one of {', '.join(sandbox.REDIS_MODES)}", param_hint="--redis")

    env = app_context(ctx)
    _guard(
        "up",
        lambda: sandbox.up(
            state_dir, api_instances=api_instances, redis_mode=redis, progress=env.progress
        ),
    )
    env.progress(f"config: {state_dir.resolve() / 'config.yaml'}")
    env.progress(f"try:    e2ee-ops --config {state_dir.resolve() / 'config.yaml'} doctor")
    finish(ctx, _rows(state_dir), output=output, title="sandbox")


@app.command("status")
def status(
    ctx: typer.Context, state_dir: StateDir = DEFAULT_DIR, output: OutputOption = None
) -> None:
    """Each sandbox process, its pid and its address."""
    rows = []
    _guard("status", lambda: rows.extend(_rows(state_dir)))
    finish(ctx, rows, output=output, title="sandbox")


@app.command("down")
def down(
    ctx: typer.Context, state_dir: StateDir = DEFAULT_DIR, output: OutputOption = None
) -> None:
    """Stop every sandbox process (data stays in STATE_DIR)."""
    from e2ee_ops import sandbox

    _guard("down", lambda: sandbox.down(state_dir))
    finish(ctx, _rows(state_dir), output=output, title="sandbox")


def _service_command(action: str) -> None:
    def command(
        ctx: typer.Context,
        service: Annotated[str, typer.Argument(help="postgres, redis or api")],
        state_dir: StateDir = DEFAULT_DIR,
        instance: Annotated[
            int | None,
            typer.Option("--instance", min=1, metavar="K", help="Only API instance K (1-based)."),
        ] = None,
        output: OutputOption = None,
    ) -> None:
        from e2ee_ops import sandbox

        if service not in sandbox.SERVICES:
            raise typer.BadParameter(f"one of {', '.join(sandbox.SERVICES)}", param_hint="SERVICE")
        if instance is not None and service != "api":
            raise typer.BadParameter("applies to the api service only", param_hint="--instance")
        call = {
            "start": sandbox.start_service,
            "stop": sandbox.stop_service,
            "restart": sandbox.restart_service,
        }[action]
        _guard(action, lambda: call(state_dir.resolve(), service, instance))
        finish(ctx, _rows(state_dir), output=output, title="sandbox")

    command.__doc__ = f"{action.capitalize()} one sandbox service (for outage drills)."
    app.command(action)(command)


for _action in ("start", "stop", "restart"):
    _service_command(_action)
