"""Redis under Sentinel, for real: SIGKILL the primary under message traffic with
receivers connected, and kill sentinels; `redis check` and `redis recover` against it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml

from e2ee_ops import sandbox
from e2ee_ops.adapters.sentinel import SentinelAdmin
from e2ee_ops.procedures.redis_sentinel import read_topology, sentinel_findings
from e2ee_ops.reference.client import OnlineDevice, ReferenceClient
from e2ee_ops.sandbox import kill_redis_node, sigkill
from e2ee_ops.status import Status
from tests.integration.sentinel.conftest import wait_healthy
from tests.support.cli import cli


def token(state: sandbox.SandboxState, key: str) -> str:
    return Path(state.accounts[key].token_file).read_text().strip()


def check(state: sandbox.SandboxState) -> tuple[int, dict[str, dict]]:  # type: ignore[type-arg]
    result = cli("--config", str(state.config_path), "--output", "json", "redis", "check")
    return result.exit_code, {f["name"]: f for f in result.json["findings"]}


class Sender:
    """Canary A sends to canary B and to the demo user, one message after the other,
    until stopped; it records every message id the API answered with."""

    def __init__(self, state: sandbox.SandboxState) -> None:
        self.client = ReferenceClient(state.api_urls[0], token(state, "canary_a"))
        self.device = str(state.accounts["canary_a"].device_id)
        self.peers = [state.accounts["canary_b"].account_id, state.accounts["demo"].account_id]
        self.conversations = [self.client.open_conversation(peer) for peer in self.peers]
        self.sent: dict[int, list[int]] = {peer: [] for peer in self.peers}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for peer, conversation in zip(self.peers, self.conversations, strict=True):
                try:
                    answer = self.client.send(conversation, self.device, peer)
                except Exception:  # noqa: BLE001 - counted: storing must never fail
                    self.failures += 1
                    continue
                self.sent[peer].append(int(answer["message_id"]))
            self._stop.wait(0.05)

    def count(self) -> int:
        return sum(len(ids) for ids in self.sent.values())

    def wait_for_more(self, n: int, deadline: float = 10.0) -> None:
        target = self.count() + n
        end = time.monotonic() + deadline
        while self.count() < target:
            assert time.monotonic() < end, "the sender stalled"
            time.sleep(0.05)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def wait_until(predicate, deadline: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.1)


def test_sandbox_writes_the_sentinels_into_the_config(
    sentinel_sandbox: sandbox.SandboxState,
) -> None:
    config = yaml.safe_load(sentinel_sandbox.config_path.read_text())
    assert config["redis"] == {
        "sentinel": {
            "hosts": [f"127.0.0.1:{port}" for port in sentinel_sandbox.sentinel_ports],
            "service_name": "e2ee",
        }
    }
    rows = {s.name: s.running for s in sandbox.status(sentinel_sandbox.dir)}
    assert [name for name in rows if name.startswith(("redis", "sentinel"))] == [
        "redis 1",
        "redis 2",
        "sentinel 1",
        "sentinel 2",
        "sentinel 3",
    ]
    assert all(rows.values())


def test_primary_sigkilled_under_traffic_every_message_arrives_exactly_once(
    sentinel_sandbox: sandbox.SandboxState, sentinels: SentinelAdmin
) -> None:
    wait_healthy(sentinels)
    state = sandbox.SandboxState.load(sentinel_sandbox.dir)  # pids as the restarts left them
    code, findings = check(state)
    assert code == 0, findings
    old_primary = read_topology(sentinels).primary
    assert old_primary is not None

    # Receivers on the other instance than the sender: every wake-up crosses Redis.
    receivers = {
        key: OnlineDevice(
            state.api_urls[1], token(state, key), str(state.accounts[key].device_id)
        ).start()
        for key in ("canary_b", "demo")
    }
    try:
        with Sender(state) as sender:
            sender.wait_for_more(6)  # before
            kill_redis_node(state, int(old_primary.rpartition(":")[2]))
            # Before down-after has passed, the sentinels still name the dead primary.
            primary = {f.name: f for f in sentinel_findings(sentinels)}["sentinel primary"]
            assert primary.status is Status.CRITICAL, primary.summary
            assert old_primary in primary.summary
            sender.wait_for_more(6)  # during the switch

            wait_until(lambda: read_topology(sentinels).primary not in (None, old_primary))
            wait_until(lambda: check(state)[0] == 1)
            code, findings = check(state)
            assert code == 1
            assert findings["redis replicas"]["status"] == "WARNING"
            assert f"{old_primary} down" in findings["redis replicas"]["summary"]
            assert findings["sentinel primary"]["status"] == "OK"
            assert all(
                f["status"] == "OK" for n, f in findings.items() if n.startswith("api relay_lag")
            )
            sender.wait_for_more(6)  # after: published through the new primary

            result = cli(
                "--config", str(state.config_path), "--output", "json",
                "redis", "recover", "--execute", "--yes",
            )  # fmt: skip
            assert result.exit_code == 0, result.stdout + result.stderr
            outage = result.json["data"]["outage"]
            assert outage["topology"] == "sentinel"
            assert outage["rejoined_as_replica"] == [old_primary]
            assert outage["primary"] != old_primary
            unavailable = outage["unavailability"]
            assert unavailable["from"] is not None and unavailable["seconds"] > 0
            assert outage["duration_seconds"] == unavailable["seconds"]
            assert outage["all_delivered"] is True and outage["undelivered"] == []
            assert outage["failover"]["primary_since"] is not None
            assert sentinels.role(old_primary).role == "slave"
            sender.wait_for_more(6)
        assert sender.failures == 0
        code, findings = check(state)
        assert code == 0, [f["summary"] for f in findings.values() if f["status"] != "OK"]
        for key, peer in (("canary_b", "canary_b"), ("demo", "demo")):
            sent = sender.sent[state.accounts[peer].account_id]
            device = receivers[key]
            wait_until(lambda d=device, s=sent: set(s) <= set(d.messages()))
            got = [m for m in device.deliveries if m in set(sent)]
            assert sorted(got) == sorted(sent), "a message arrived twice or never"
    finally:
        for device in receivers.values():
            device.stop()


def test_one_sentinel_lost_is_a_warning_two_lost_is_critical_and_no_failover(
    sentinel_sandbox: sandbox.SandboxState, sentinels: SentinelAdmin
) -> None:
    wait_healthy(sentinels)
    state = sandbox.SandboxState.load(sentinel_sandbox.dir)  # pids as the restarts left them
    sigkill(state.sentinel_pids[2])
    code, findings = check(state)
    assert code == 1
    assert findings["sentinel quorum"]["status"] == "WARNING"
    assert state.sentinel_hosts[2] in findings["sentinel quorum"]["summary"]
    doctor = cli("--config", str(state.config_path), "--output", "json", "doctor").json
    quorum = next(f for f in doctor["findings"] if f["name"] == "sentinel quorum")
    assert quorum["status"] == "WARNING"

    primary = read_topology(sentinels).primary
    assert primary is not None
    sigkill(state.sentinel_pids[1])
    kill_redis_node(state, int(primary.rpartition(":")[2]))
    code, findings = check(state)
    assert code == 2
    assert findings["sentinel quorum"]["status"] == "CRITICAL"
    assert "quorum lost" in findings["sentinel quorum"]["summary"]

    result = cli(
        "--config", str(state.config_path), "--output", "json",
        "redis", "recover", "--execute", "--yes",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no failover attempted" in result.stdout
    forced = cli("--config", str(state.config_path), "redis", "recover", "--force")
    assert forced.exit_code == 64 and "under Sentinel" in forced.stderr
    # The one sentinel left still names the dead primary: nobody promoted a replica.
    assert read_topology(sentinels).views[0].primary == primary


def test_recover_asks_for_the_failover_the_sentinels_did_not_make(
    sentinel_sandbox: sandbox.SandboxState, sentinels: SentinelAdmin
) -> None:
    import dataclasses

    import redis

    from e2ee_ops.cli import targets
    from e2ee_ops.context import AppContext
    from e2ee_ops.procedures.redis_outage import recover_redis

    wait_healthy(sentinels)
    state = sandbox.SandboxState.load(sentinel_sandbox.dir)
    old_primary = read_topology(sentinels).primary
    assert old_primary is not None

    def down_after(ms: int) -> None:
        for port in state.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=2) as c:
                c.execute_command("SENTINEL", "SET", "e2ee", "down-after-milliseconds", ms)

    # Sentinels that would notice only after a minute: the failover is the toolkit's.
    down_after(60_000)
    env = AppContext.create(config_file=state.config_path)
    try:
        kill_redis_node(state, int(old_primary.rpartition(":")[2]))
        # Waits run on a clock that jumps by each sleep: the minute passes at once.
        now = [0.0]

        def sleep(seconds: float) -> None:
            time.sleep(0.02)
            now[0] += seconds

        t = dataclasses.replace(
            targets.redis_targets(env, with_restarter=True), monotonic=lambda: now[0], sleep=sleep
        )
        plan = recover_redis(t, execute=True, settle_seconds=5)
        outcomes = [s.outcome for s in plan.steps]
        assert plan.status is Status.OK, outcomes
        assert outcomes[1] == (
            f"no failover within 65 s: SENTINEL FAILOVER e2ee sent to {state.sentinel_hosts[0]}"
        )
        outage = plan.data["outage"]
        assert outage["failover"]["triggered"] is True
        assert outage["primary"] != old_primary
        assert outage["rejoined_as_replica"] == [old_primary]
        assert sentinels.role(old_primary).primary == outage["primary"]
    finally:
        env.resources.close()
        down_after(1000)
