"""Admin JSON metrics and the Prometheus exposition, checked against seeded real data."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2ee_ops.dburl import libpq_url

API_DOC = Path(__file__).parents[3] / "docs" / "reference-api.md"
LIVE_CHAT_KEYS = {
    "redis_status",
    "relay_lag",
    "pubsub_lag_seconds",
    "sse",
    "instance_id",
    "redis_unavailable_since",
    "last_redis_outage",
    "rate_limit_mode",
}
SSE_KEYS = {
    "connections",
    "connects_total",
    "disconnects_total",
    "failures_total",
    "disconnect_rate",
    "failure_rate",
}


def _documented_dm_metrics() -> dict[str, Any]:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## `/dm/metrics`", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    documented: dict[str, Any] = json.loads(block.group(1))
    return documented


def _sql(url: str, query: str, params: tuple = ()) -> None:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(query, params)


def _prometheus(base_url: str) -> dict[str, float]:
    """Every sample as 'name{labels}' -> value."""
    r = httpx.get(base_url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def _errors(admin) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    errors: dict[str, dict[str, float]] = admin.request("GET", "/dm/metrics")["errors"]
    return errors


@pytest.mark.parametrize("path", ["/dm/metrics", "/live-chat/metrics"])
def test_metrics_need_admin(reference_server, users, path) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    anonymous = httpx.get(reference_server.url + path)
    assert anonymous.status_code == 401
    as_user = alice.http.get(path)
    assert as_user.status_code == 403
    assert as_user.json() == {"detail": "admin scope required"}


def test_dm_metrics_keys_match_the_docs(admin) -> None:  # type: ignore[no-untyped-def]
    documented = _documented_dm_metrics()
    got = admin.request("GET", "/dm/metrics")
    assert set(got) == set(documented)
    for key, value in documented.items():
        if isinstance(value, dict) and key != "errors":
            assert set(got[key]) == set(value), key
    assert set(got["errors"]) == {"by_status", "by_code"}
    assert got["redis_status"] == "ok"
    assert got["e2ee_dm_enabled"] is True
    assert got["otpk_pools"]["critical_threshold"] == 5
    assert got["otpk_pools"]["warning_threshold"] == 10
    assert got["identity_changes"]["threshold_per_day"] == 2
    assert got["signed_prekey_age_days"]["max_age_days"] == 90


def test_live_chat_metrics_keys(admin) -> None:  # type: ignore[no-untyped-def]
    got = admin.request("GET", "/live-chat/metrics")
    assert set(got) == LIVE_CHAT_KEYS
    assert set(got["sse"]) == SSE_KEYS
    assert got["redis_status"] == "ok"
    assert got["relay_lag"] is False


def test_empty_database(admin) -> None:  # type: ignore[no-untyped-def]
    got = admin.request("GET", "/dm/metrics")
    pools = got["otpk_pools"]
    assert pools["devices_active"] == 0 and pools["below_critical"] == 0
    # The docs show 0; the server answers null when there is no device at all.
    assert pools["min_remaining"] in (None, 0) and pools["average_remaining"] == 0.0
    assert got["message_stats"]["messages_last_hour"] == 0
    assert got["identity_changes"]["max_per_user_24h"] == 0
    assert got["signed_prekey_age_days"]["devices_over_max"] == 0


@pytest.fixture
def seeded(users, database_url):  # type: ignore[no-untyped-def]
    """Devices with pools 3, 7, 20, 0 (claimed empty), 15 (signed prekey 100 days old),
    25 (after 3 identity changes), 12 (after 2), and a revoked one; a few messages."""
    _, alice = users.new("alice")
    _, bob = users.new("bob")
    carol_id, carol = users.new("carol")
    dave_id, dave = users.new("dave")
    _, claimer = users.new("claimer")

    critical = alice.register_device("critical", prekeys=3)["device_id"]
    warning = alice.register_device("warning", prekeys=7)["device_id"]
    fine = bob.register_device("fine", prekeys=20)["device_id"]
    empty = bob.register_device("empty", prekeys=2)["device_id"]
    claimer.claim(empty)
    claimer.claim(empty)
    old = bob.register_device("old", prekeys=15)["device_id"]
    _sql(
        database_url,
        "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '100 days'"
        " WHERE device_id = %s",
        (old,),
    )
    changer = carol.register_device("changer", prekeys=5)["device_id"]
    for _ in range(3):
        carol.change_identity(changer)
    carol.upload_prekeys(changer, 25)
    twice = dave.register_device("twice", prekeys=5)["device_id"]
    for _ in range(2):
        dave.change_identity(twice)
    dave.upload_prekeys(twice, 12)
    # An identity change two days ago no longer counts.
    _sql(
        database_url,
        "INSERT INTO e2ee_identity_events (user_id, device_id, old_fingerprint, new_fingerprint,"
        " occurred_at) VALUES (%s, %s, 'a', 'b', now() - interval '2 days')",
        (dave_id, twice),
    )
    revoked = carol.register_device("revoked", prekeys=1)["device_id"]
    carol.revoke_device(revoked)

    conv = carol.open_conversation(dave_id)
    for _ in range(4):
        carol.send(conv, changer, dave_id)
    return {
        "critical": critical,
        "warning": warning,
        "fine": fine,
        "empty": empty,
        "old": old,
        "carol_id": carol_id,
        "claimer": claimer,
    }


def test_numbers_follow_the_seeded_data(admin, seeded) -> None:  # type: ignore[no-untyped-def]
    got = admin.request("GET", "/dm/metrics")
    pools = got["otpk_pools"]
    pool_sizes = [3, 7, 20, 0, 15, 25, 12]
    assert pools["devices_active"] == 7
    assert pools["below_critical"] == 2  # 3 and 0
    assert pools["below_warning"] == 3  # 3, 7 and 0
    assert pools["exhausted"] == 1
    assert pools["min_remaining"] == 0
    assert pools["average_remaining"] == round(sum(pool_sizes) / len(pool_sizes), 2)
    assert pools["claims_last_hour"] == 2
    assert pools["claim_rate_per_minute"] == round(2 / 60, 3)

    ages = got["signed_prekey_age_days"]
    assert ages["devices_over_max"] == 1
    assert 99.99 < ages["max"] < 100.01
    assert 100 / 7 - 0.01 < ages["average"] < 100 / 7 + 0.01

    identity = got["identity_changes"]
    assert identity["last_24h"] == 5
    assert identity["max_per_user_24h"] == 3
    assert identity["users_over_threshold"] == 1

    stats = got["message_stats"]
    assert stats["messages_last_minute"] == 4
    assert stats["messages_last_hour"] == 4
    assert stats["messages_per_minute"] == round(4 / 60, 3)
    assert stats["undelivered_last_5_minutes"] == 4


def test_prometheus_exposition_matches(reference_server, seeded) -> None:  # type: ignore[no-untyped-def]
    samples = _prometheus(reference_server.url)
    assert samples["e2ee_redis_up{}"] == 1.0
    assert samples["e2ee_redis_unavailable_seconds{}"] == 0.0
    assert samples["e2ee_dm_enabled{}"] == 1.0
    assert samples["e2ee_relay_lag{}"] == 0.0
    assert samples["e2ee_otpk_devices_active{}"] == 7
    assert samples["e2ee_otpk_devices_below_critical{}"] == 2
    assert samples["e2ee_otpk_devices_below_warning{}"] == 3
    assert samples["e2ee_otpk_devices_exhausted{}"] == 1
    assert samples["e2ee_otpk_remaining_min{}"] == 0
    assert samples["e2ee_prekey_claims_last_hour{}"] == 2
    assert samples["e2ee_signed_prekey_devices_over_max_age{}"] == 1
    assert 99.99 * 86400 < samples["e2ee_signed_prekey_age_max_seconds{}"] < 100.01 * 86400
    assert samples["e2ee_identity_changes_max_per_user_24h{}"] == 3
    assert samples["e2ee_identity_change_users_over_threshold{}"] == 1
    assert samples["e2ee_undelivered_messages_5m{}"] == 4
    assert samples["e2ee_messages_sent_total{}"] >= 4
    assert samples["e2ee_prekey_claims_total{}"] >= 2
    assert "e2ee_delivery_latency_seconds_count{}" in samples


def test_errors_are_counted_by_code(admin, seeded, reference_server) -> None:  # type: ignore[no-untyped-def]
    before = _errors(admin)
    claimer = seeded["claimer"]
    r = claimer.http.post(f"/e2ee/devices/{seeded['empty']}/claim")
    assert r.status_code == 409 and r.json()["code"] == "PREKEYS_EXHAUSTED"
    r = claimer.http.post(f"/e2ee/devices/{seeded['old']}/claim")
    assert r.status_code == 409 and r.json()["code"] == "BUNDLE_STALE"
    r = claimer.http.post(f"/e2ee/devices/{seeded['empty']}/claim")
    assert r.status_code == 409
    assert httpx.get(reference_server.url + "/e2ee/devices").status_code == 401
    after = _errors(admin)

    def delta(kind: str, key: str) -> float:
        return after[kind].get(key, 0) - before[kind].get(key, 0)

    assert delta("by_code", "PREKEYS_EXHAUSTED") == 2
    assert delta("by_code", "BUNDLE_STALE") == 1
    assert delta("by_status", "409") == 3
    assert delta("by_status", "401") == 1
    samples = _prometheus(reference_server.url)
    assert (
        samples["e2ee_http_errors_total{code=PREKEYS_EXHAUSTED,status=409}"]
        == (after["by_code"]["PREKEYS_EXHAUSTED"])
    )


def _series(samples: dict[str, float]) -> set[str]:
    # Timestamps of creation are per-series bookkeeping, not extra series.
    return {k for k in samples if "_created{" not in k}


def test_label_cardinality_stays_bounded(reference_server, users, admin) -> None:  # type: ignore[no-untyped-def]
    owner_id, owner = users.new("owner")
    _, claimer = users.new("claimer")
    first = owner.register_device("first", prekeys=1)["device_id"]
    claimer.claim(first)
    # Warm up every label set the traffic below produces.
    claimer.http.post(f"/e2ee/devices/{first}/claim")  # 409 PREKEYS_EXHAUSTED
    claimer.http.post(f"/e2ee/devices/{uuid.uuid4()}/claim")  # 404
    before = _series(_prometheus(reference_server.url))

    devices = [owner.register_device(f"d{i}", prekeys=2)["device_id"] for i in range(30)]
    for device_id in devices:
        claimer.claim(device_id)
        claimer.claim(device_id)
        assert claimer.http.post(f"/e2ee/devices/{device_id}/claim").status_code == 409
        assert claimer.http.post(f"/e2ee/devices/{uuid.uuid4()}/claim").status_code == 404
    for i in range(10):
        uid = admin.create_user(f"extra{i}")
        assert uid != owner_id
    after_samples = _prometheus(reference_server.url)
    after = _series(after_samples)
    assert after == before
    assert after_samples["e2ee_otpk_devices_active{}"] == 31
    assert after_samples["e2ee_otpk_devices_exhausted{}"] == 31
    # No label value names a device or a user.
    text = httpx.get(reference_server.url + "/metrics").text
    for device_id in devices:
        assert device_id not in text


def test_promtool_accepts_the_live_exposition(reference_server, seeded, promtool) -> None:  # type: ignore[no-untyped-def]
    text = httpx.get(reference_server.url + "/metrics").text
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
    names = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    assert names and all(n.startswith("e2ee_") for n in names), names
    assert not any(n.endswith("_days") for n in names)
