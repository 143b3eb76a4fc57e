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
        run = run_cli(ctx.marks.get("config", ctx.state.config_path), step.args)
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


class Receiver:
    """A local HTTP endpoint standing in for the team's chat webhook: it keeps every POST."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[tuple[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    received.append((self.path, json.loads(body)))
                except ValueError:
                    received.append((self.path, body.decode("utf-8", "replace")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, path: str) -> list[Any]:
        return [body for p, body in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def demo_config(state: sandbox.SandboxState, receiver: Receiver, workdir: Path) -> Path:
    """The sandbox's config plus notifiers pointing at the local receiver."""
    import yaml

    from e2ee_ops.secret import write_secret_file

    config = yaml.safe_load(state.config_path.read_text())
    hook_file = workdir / "secrets" / "incident-webhook.url"
    write_secret_file(hook_file, receiver.url + "/incident")
    config["notifiers"] = {"webhook": {"url": receiver.url + "/devices", "slack_compatible": True}}
    config["incident"] = {"webhook": {"file": str(hook_file)}}
    path = workdir / "demo-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_steps(ctx: DemoContext) -> list[Step]:
    state, world = ctx.state, ctx.world
    # Messages go in through the last API instance; the online devices follow their
    # streams on the first, so every delivery crosses the fleet through Redis.
    api = state.api_urls[-1]
    receiver: Receiver = ctx.marks["receiver"]
    spammer = world.users[seed.SPAMMER]
    postmortem = ctx.workdir / "postmortem.md"

    def stop_redis_and_send() -> None:
        ctx.marks["outage_start"] = datetime.now(UTC).isoformat(timespec="seconds")
        sandbox.stop_service(state.dir, "redis")
        ctx.marks["during"] = seed.send(world, api, "alice", "bob", count=5)

    def kill_primary_and_send() -> None:
        """SIGKILL the Redis primary, send through the switch, and wait (as an operator
        watching would) until the sentinels name a new primary."""
        ctx.marks["outage_start"] = datetime.now(UTC).isoformat(timespec="seconds")
        old = sandbox.current_primary_port(state)
        if old is None:
            raise sandbox.SandboxError("no sentinel names a primary")
        sandbox.kill_redis_node(state, old)
        ctx.marks["during"] = seed.send(world, api, "alice", "bob", count=5)
        deadline = time.monotonic() + 30
        while sandbox.current_primary_port(state) in (None, old):
            if time.monotonic() > deadline:
                raise sandbox.SandboxError("the sentinels did not fail over within 30 s")
            time.sleep(0.2)

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

    def dm_refused(run: Run) -> str | None:
        from e2ee_ops.reference.client import ApiFailure, ReferenceClient

        with ReferenceClient(api, world.users["carol"].token) as carol:
            try:
                carol.conversations()
            except ApiFailure as exc:
                if exc.status_code == 403 and exc.body == {"detail": "E2EE DM is not enabled"}:
                    return None
                return f"expected 403 'E2EE DM is not enabled', got {exc}"
        return "DM still answers after the flag was disabled"

    def dm_works_and_traffic_flows(run: Run) -> str | None:
        ids = seed.send(world, api, "carol", "dave")
        deadline = time.monotonic() + 15  # dave's client reconnects after the restart
        while time.monotonic() < deadline:
            if ids[0] in world.online["dave"].messages():
                return None
            time.sleep(0.2)
        return "a message sent after re-enabling did not reach dave's device"

    def schema_unchanged(run: Run) -> str | None:
        body = run.json
        text = json.dumps(body) if body is not None else run.stderr
        return None if "dm_messages" in text or "refus" in text.lower() else "no refusal shown"

    def reminders_delivered(run: Run) -> str | None:
        texts = json.dumps(receiver.posts("/devices"))
        missing = [
            name
            for name in seed.STUCK
            if world.users[name].device_id not in texts and name not in texts
        ]
        if not receiver.posts("/devices"):
            return "the local webhook received no reminder"
        return f"no reminder mentions {missing}" if missing else None

    def spammer_refused(run: Run) -> str | None:
        from e2ee_ops.reference.client import ApiFailure

        try:
            seed.send(world, api, seed.SPAMMER, "alice")
        except ApiFailure as exc:
            if exc.status_code == 403 and exc.code == "USER_BLOCKED":
                return None
            return f"expected 403 USER_BLOCKED, got {exc}"
        return "the blocked sender could still send"

    def incident_announced(run: Run) -> str | None:
        return None if receiver.posts("/incident") else "the incident channel heard nothing"

    def postmortem_written(run: Run) -> str | None:
        if not postmortem.exists():
            return f"{postmortem} was not written"
        text = postmortem.read_text()
        return None if "- [x]" in text else "the checklist has nothing measured"

    redis_outage = [
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
    ]
    if state.redis_mode == "sentinel":
        redis_outage = [
            Step(
                "Redis failover drill",
                "The primary is SIGKILLed mid-traffic; the sentinels fail over, the relay "
                "follows; detection says WARNING (one fewer replica)",
                ["redis", "check"],
                expect=(1,),
                before=kill_primary_and_send,
            ),
            Step("Redis failover drill", "The Sentinel recovery plan", ["redis", "recover"]),
            Step(
                "Redis failover drill",
                "Recover: new primary, metrics, canary over SSE, stored vs delivered, the "
                "failed node back as a replica",
                ["redis", "recover", "--execute", "--yes"],
                verify=all_delivered,
            ),
        ]

    return [
        Step(
            "Incident",
            "Open a (drill) incident: every later step joins its timeline",
            ["incident", "open", "--severity", "P2", "--title", "E2EE DM walkthrough", "--drill"],
            verify=incident_announced,
        ),
        Step(
            "Monitoring", "Every alert threshold, evaluated now", ["alerts", "check"], expect=(1, 2)
        ),
        Step("Monitoring", "Every read-only check at once", ["doctor"], expect=(1, 2)),
        *redis_outage,
        Step(
            redis_outage[0].section,
            "Detection is green again",
            ["redis", "check"],
            expect=(0, 1),
        ),
        Step(
            "Rollback",
            "Feature-flag rollback: E2EE DM off, API restarted, 403 verified",
            ["rollback", "flag", "--disable", "--execute", "--yes"],
            verify=dm_refused,
        ),
        Step(
            "Rollback",
            "And back on: DM answers and traffic flows again",
            ["rollback", "flag", "--enable", "--execute", "--yes"],
            verify=dm_works_and_traffic_flows,
        ),
        Step("Rollback", "Migration history (read-only)", ["rollback", "migration"]),
        Step(
            "Rollback",
            "A migration rollback that would drop tables holding messages is refused",
            ["rollback", "migration", "--to", "0002_e2ee_keys"],
            expect=(2,),
            verify=schema_unchanged,
        ),
        Step(
            "Stuck devices",
            "Devices under 5 / 10 prekeys and a 120-day-old signed prekey",
            ["devices", "stuck"],
            expect=(2,),
        ),
        Step(
            "Stuck devices",
            "Remind their owners through the webhook (de-duplicated)",
            ["devices", "stuck", "--notify", "webhook", "--execute", "--yes"],
            expect=(0, 1, 2),
            verify=reminders_delivered,
        ),
        Step(
            "Abuse burst",
            "Who sends the most, to how many, with how many new conversations",
            ["abuse", "top-senders", "--window", "1h"],
            expect=(1, 2),
            before=lambda: ctx.marks.setdefault("burst", seed.abuse_burst(world, api)),
        ),
        Step(
            "Abuse burst",
            "Block the abusive sender; the next send answers 403",
            [
                "abuse",
                "block",
                str(spammer.account_id),
                "--reason",
                "demo: fan-out burst",
                "--execute",
                "--yes",
            ],
            verify=spammer_refused,
        ),
        Step("Monitoring", "Alerts after the remediation", ["alerts", "check"], expect=(0, 1, 2)),
        Step(
            "Incident",
            "Close the incident",
            ["incident", "close", "--resolution", "walkthrough complete"],
        ),
        Step(
            "Post-mortem",
            "The checklist, prefilled with what the commands measured",
            ["postmortem", "checklist", "--out", str(postmortem)],
            verify=postmortem_written,
        ),
    ]


def run_demo(
    *,
    state_dir: Path | None = None,
    keep: bool = False,
    redis_mode: str = "single",
    say: Callable[[str], None] = print,
) -> list[StepResult]:
    workdir = Path(tempfile.mkdtemp(prefix="e2ee-ops-demo-")) if state_dir is None else state_dir
    redis = "Redis" if redis_mode == "single" else "Redis under Sentinel"
    say(
        f"starting the sandbox in {workdir} (embedded PostgreSQL, {redis}, "
        f"{sandbox.DEMO_API_INSTANCES} reference server instances)"
    )
    state = sandbox.up(
        workdir,
        api_instances=sandbox.DEMO_API_INSTANCES,
        redis_mode=redis_mode,
        progress=lambda m: say(f"  {m}"),
    )
    world: seed.DemoWorld | None = None
    results: list[StepResult] = []
    try:
        say("seeding users, devices (healthy, stuck, stale), traffic")
        admin_token = Path(state.accounts["admin"].token_file).read_text().strip()
        world = seed.seed(state.api_url, admin_token, state.database_url)
        receiver = Receiver()
        ctx = DemoContext(state=state, world=world, workdir=workdir, marks={"receiver": receiver})
        ctx.marks["config"] = demo_config(state, receiver, workdir)
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
        receiver_ = locals().get("receiver")
        if receiver_ is not None:
            receiver_.close()
        if keep:
            say(f"\nsandbox kept: e2ee-ops --config {state.config_path} doctor")
        else:
            sandbox.down(workdir)
            say("\nsandbox stopped")
    return results
