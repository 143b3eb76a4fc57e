"""`e2ee-ops demo`: the runbook walked through on the sandbox, as an on-call engineer would.

Each step runs a real `e2ee-ops` command in a child process against the sandbox's
config, exactly as typed in a terminal, and checks its exit code against what the
runbook leads us to expect at that point (CRITICAL while Redis is down, OK after
recovery, a refusal for a migration rollback that would drop data...). Some steps
also act on the world first (stop Redis, send traffic) or verify it afterwards
(every message sent during the outage reached its device exactly once).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from e2ee_ops import sandbox
from e2ee_ops.reference import seed

COMMAND_TIMEOUT_SECONDS = 180


@dataclass
class Run:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


@dataclass
class StepResult:
    section: str
    title: str
    command: str
    exit_code: int | None
    expected: tuple[int, ...]
    ok: bool
    detail: str
    seconds: float


@dataclass
class Step:
    section: str
    title: str
    args: list[str]
    expect: tuple[int, ...] = (0,)
    before: Callable[[], None] | None = None
    verify: Callable[[Run], str | None] | None = None  # a failure reason, or None


@dataclass
class DemoContext:
    state: sandbox.SandboxState
    world: seed.DemoWorld
    workdir: Path
    marks: dict[str, Any] = field(default_factory=dict)


def run_cli(config: Path, args: list[str]) -> Run:
    argv = [sys.executable, "-m", "e2ee_ops", "--config", str(config), "--output", "json", *args]
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def _summary(run: Run) -> str:
    body = run.json
    if isinstance(body, dict):
        return str(body.get("summary") or body.get("status") or "")
    last = (run.stderr.strip().splitlines() or [""])[-1]
    return last[:200]


def execute_step(ctx: DemoContext, step: Step) -> StepResult:
    shown = "e2ee-ops " + " ".join(step.args)
    started = time.monotonic()
    try:
        if step.before is not None:
            step.before()
        run = run_cli(ctx.state.config_path, step.args)
    except Exception as exc:  # noqa: BLE001 - reported as this step's failure
        return StepResult(
            step.section,
            step.title,
            shown,
            None,
            step.expect,
            False,
            f"{type(exc).__name__}: {exc}",
            time.monotonic() - started,
        )
    ok = run.exit_code in step.expect
    detail = _summary(run)
    if ok and step.verify is not None:
        reason = step.verify(run)
        if reason:
            ok, detail = False, reason
    return StepResult(
        step.section,
        step.title,
        shown,
        run.exit_code,
        step.expect,
        ok,
        detail,
        time.monotonic() - started,
    )


def build_steps(ctx: DemoContext) -> list[Step]:
    state, world = ctx.state, ctx.world
    api = state.api_url

    def stop_redis_and_send() -> None:
        ctx.marks["outage_start"] = datetime.now(UTC).isoformat()
        sandbox.stop_service(state.dir, "redis")
        ctx.marks["during"] = seed.send(world, api, "alice", "bob", count=5)

    def all_delivered(run: Run) -> str | None:
        expected = ctx.marks.get("during", [])
        deadline = time.monotonic() + 10
        got: list[int] = []
        while time.monotonic() < deadline:
            got = [m for m in world.online["bob"].messages() if m in expected]
            if got == expected:
                return None
            time.sleep(0.2)
        return f"bob's device received {got}, expected {expected} exactly once"

    return [
        Step("Start", "Everything healthy before the incident?", ["doctor"], expect=(0, 1, 2)),
        Step(
            "Redis outage",
            "Redis goes down mid-traffic; detection says CRITICAL",
            ["redis", "check"],
            expect=(2,),
            before=stop_redis_and_send,
        ),
        Step("Redis outage", "The recovery plan (nothing changes)", ["redis", "recover"]),
        Step(
            "Redis outage",
            "Recover: restart, PING, metrics, canary over SSE, stored vs delivered",
            ["redis", "recover", "--execute", "--yes"],
            verify=all_delivered,
        ),
        Step("Redis outage", "Detection is green again", ["redis", "check"], expect=(0, 1)),
    ]


def run_demo(
    *,
    state_dir: Path | None = None,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> list[StepResult]:
    workdir = Path(tempfile.mkdtemp(prefix="e2ee-ops-demo-")) if state_dir is None else state_dir
    say(f"starting the sandbox in {workdir} (embedded PostgreSQL, Redis, reference server)")
    state = sandbox.up(workdir, progress=lambda m: say(f"  {m}"))
    world: seed.DemoWorld | None = None
    results: list[StepResult] = []
    try:
        say("seeding users, devices (healthy, stuck, stale), traffic")
        admin_token = Path(state.accounts["admin"].token_file).read_text().strip()
        world = seed.seed(state.api_url, admin_token, state.database_url)
        ctx = DemoContext(state=state, world=world, workdir=workdir)
        section = ""
        for step in build_steps(ctx):
            if step.section != section:
                section = step.section
                say(f"\n== {section} ==")
            result = execute_step(ctx, step)
            results.append(result)
            mark = "ok " if result.ok else "FAIL"
            code = "-" if result.exit_code is None else str(result.exit_code)
            say(f"[{mark}] {result.title}")
            expected = "/".join(map(str, result.expected))
            say(
                f"       $ {result.command}   -> exit {code} (expected {expected})"
                f" in {result.seconds:.1f}s"
            )
            if result.detail:
                say(f"       {result.detail}")
    finally:
        if world is not None:
            world.stop()
        if keep:
            say(f"\nsandbox kept: e2ee-ops --config {state.config_path} doctor")
        else:
            sandbox.down(workdir)
            say("\nsandbox stopped")
    return results
