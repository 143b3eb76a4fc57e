"""`alerts check` against the real reference server, in states that trip each threshold."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from e2ee_ops.dburl import libpq_url
from tests.integration.reference.streams import StreamCollector
from tests.support.cli import cli

EXIT_CODE = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def check(config: Path, **thresholds: float):  # type: ignore[no-untyped-def]
    env = {f"E2EE_OPS_THRESHOLDS__{k.upper()}": str(v) for k, v in thresholds.items()}
    result = cli("--config", str(config), "--output", "json", "alerts", "check", env=env)
    assert "Traceback" not in result.stderr
    by_name = {f["name"].rsplit(" (", 1)[0]: f for f in result.json["findings"]}
    return result.exit_code, by_name


def test_pools_identity_and_prekey_age_trip_their_thresholds(
    ops_config, users, database_url
) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    _, carol = users.new("carol")
    alice.register_device("roomy", prekeys=50)
    code, found = check(ops_config)
    assert found["otpk pool min"]["status"] == "OK"
    assert found["identity changes per user per day"]["status"] == "OK"
    assert found["signed prekey age max"]["status"] == "OK"

    low = alice.register_device("low", prekeys=3)["device_id"]
    changer = carol.register_device("changer", prekeys=50)["device_id"]
    for _ in range(3):
        carol.change_identity(changer)
    carol.upload_prekeys(changer, 50)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '100 days'"
            " WHERE device_id = %s",
            (low,),
        )
    code, found = check(ops_config)
    assert code == 2
    assert found["otpk pool min"]["status"] == "CRITICAL"
    assert found["otpk pool min"]["value"] == 3
    assert found["identity changes per user per day"]["status"] == "CRITICAL"
    assert found["identity changes per user per day"]["value"] == 3
    assert found["signed prekey age max"]["status"] == "WARNING"

    # The config's thresholds decide, not the server's: critical below 2, warning below 4.
    _, found = check(ops_config, otpk_critical=2, otpk_warning=4, identity_changes_per_day=3)
    assert found["otpk pool min"]["status"] == "WARNING"
    assert found["identity changes per user per day"]["status"] == "OK"


def test_latency_and_pubsub_lag_trip_low_thresholds(ops_config, users, reference_server) -> None:  # type: ignore[no-untyped-def]
    bob_id, bob = users.new("bob")
    _, dan = users.new("dan")
    bob_device = bob.register_device("phone", prekeys=50)["device_id"]
    dan_device = dan.register_device("phone", prekeys=50)["device_id"]
    token = users.admin.issue_token(bob_id)
    collector = StreamCollector(reference_server.url, token, bob_device).start()
    try:
        time.sleep(0.5)  # let the stream open before sending
        conv = dan.open_conversation(bob_id)
        dan.send(conv, dan_device, bob_id)
        assert collector.wait_for(lambda evs: any(e.event == "message" for e in evs), 10)
    finally:
        collector.close()
    code, found = check(ops_config, delivery_p99_ms=0.0001, pubsub_lag_seconds=0.0000001)
    assert found["delivery p99"]["status"] == "WARNING"
    assert found["pub/sub lag"]["status"] == "WARNING"
    # The exit code is the worst finding's: at least the two warnings above.
    worst = max(EXIT_CODE[f["status"]] for f in found.values())
    assert code == worst and code >= 1


def test_redis_down_is_critical_once_dated_past_the_threshold(
    ops_config, users, reference_server, controllable_redis
) -> None:  # type: ignore[no-untyped-def]
    bob_id, bob = users.new("bob")
    _, dan = users.new("dan")
    bob.register_device("phone", prekeys=50)
    dan_device = dan.register_device("phone", prekeys=50)["device_id"]
    conv = dan.open_conversation(bob_id)
    controllable_redis.stop()
    dan.send(conv, dan_device, bob_id)  # stored, not pushed: it dates the outage
    deadline = time.monotonic() + 15
    while "e2ee_redis_up 0.0" not in httpx.get(f"{reference_server.url}/metrics").text:
        assert time.monotonic() < deadline, "the server never noticed Redis was down"
        time.sleep(0.2)
    code, found = check(ops_config, redis_down_seconds=0.001)
    assert code == 2
    down = next(f for n, f in found.items() if n.startswith("redis down"))
    assert down["status"] == "CRITICAL" and down["value"] >= 0
    _, found = check(ops_config, redis_down_seconds=3600)
    down = next(f for n, f in found.items() if n.startswith("redis down"))
    assert down["status"] == "WARNING"
