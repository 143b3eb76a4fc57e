"""Closed to abuse and never a 500: blocked users and floods cannot drain prekey pools,
revoked access ends open streams, malformed input is a 422 naming its field, big
bodies a 413, and closed streams do not flood the log. Real uvicorn processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ApiFailure, DeviceIdentity, ReferenceClient, _b64

from .servers import device_value
from .streams import StreamCollector

MAX_BODY = 65536
PER_REQUESTER, PER_DEVICE = 6, 4


@pytest.fixture(scope="module")
def guarded(database_url: str, redis_url: str, workdir: Path) -> Iterator[ReferenceServerProcess]:
    server = ReferenceServerProcess(
        database_url,
        redis_url,
        workdir / f"guarded-{uuid.uuid4().hex[:6]}",
        env={
            "E2EE_HEARTBEAT_SECONDS": "0.3",
            "E2EE_METRICS_CACHE_SECONDS": "0",
            "E2EE_CLAIM_LIMIT_PER_REQUESTER": str(PER_REQUESTER),
            "E2EE_CLAIM_LIMIT_PER_DEVICE": str(PER_DEVICE),
            "E2EE_MAX_BODY_BYTES": str(MAX_BODY),
            "E2EE_LOG_LEVEL": "debug",
        },
    )
    server.start()
    yield server
    server.stop()


def _token(client: ReferenceClient) -> str:
    return client.http.headers["Authorization"].removeprefix("Bearer ")


def _on(server: ReferenceServerProcess, client: ReferenceClient) -> ReferenceClient:
    return ReferenceClient(server.url, _token(client))


def _remaining(database_url: str, device_id: str) -> int:
    return int(device_value(database_url, "e2ee_key_bundles", "prekeys_remaining", device_id))


# ---- prekey claims ------------------------------------------------------------------


def test_admin_blocked_user_cannot_claim_prekeys(guarded, users, admin, clean_db) -> None:  # type: ignore[no-untyped-def]
    _, victim = users.new("victim")
    device = victim.register_device("victim-phone", prekeys=20)["device_id"]
    mallory_id, mallory = users.new("mallory")
    admin.block(mallory_id, "draining prekeys")
    with _on(guarded, mallory) as m, pytest.raises(ApiFailure) as refused:
        m.claim(device)
    assert refused.value.status_code == 403 and refused.value.code == "USER_BLOCKED"
    assert _remaining(clean_db, device) == 20


def test_user_blocked_by_the_owner_cannot_claim_their_prekeys(guarded, users, clean_db) -> None:  # type: ignore[no-untyped-def]
    victim_id, victim = users.new("victim")
    device = victim.register_device("victim-phone", prekeys=20)["device_id"]
    mallory_id, mallory = users.new("mallory")
    victim.request("POST", "/dm/blocks", json={"user_id": mallory_id})
    with _on(guarded, mallory) as m, pytest.raises(ApiFailure) as refused:
        m.claim(device)
    assert refused.value.status_code == 403 and refused.value.code == "BLOCKED_BY_RECIPIENT"
    assert _remaining(clean_db, device) == 20


def test_a_claim_flood_cannot_empty_a_pool(guarded, users, clean_db) -> None:  # type: ignore[no-untyped-def]
    _, victim = users.new("victim")
    device = victim.register_device("victim-phone", prekeys=20)["device_id"]
    _, mallory = users.new("mallory")
    with _on(guarded, mallory) as m:
        answers = [m.http.post(f"/e2ee/devices/{device}/claim") for _ in range(50)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == PER_DEVICE and statuses.count(429) == 50 - PER_DEVICE
    refused = answers[PER_DEVICE]  # the first refusal: the device's limit
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.json()["limit"] == "claims_per_device"
    assert int(refused.headers["Retry-After"]) == refused.json()["retry_in_seconds"] >= 1
    assert _remaining(clean_db, device) == 20 - PER_DEVICE


def test_claims_are_limited_per_target_device_across_requesters(guarded, users) -> None:  # type: ignore[no-untyped-def]
    _, victim = users.new("victim")
    device = victim.register_device("victim-phone", prekeys=20)["device_id"]
    sybils = [users.new(f"sybil{i}")[1] for i in range(PER_DEVICE + 1)]
    statuses = []
    for sybil in sybils:
        with _on(guarded, sybil) as s:
            statuses.append(s.http.post(f"/e2ee/devices/{device}/claim").status_code)
    assert statuses == [200] * PER_DEVICE + [429]


def test_claims_are_limited_per_requester_across_devices(guarded, users) -> None:  # type: ignore[no-untyped-def]
    owners = [users.new(f"owner{i}")[1] for i in range(PER_REQUESTER + 1)]
    devices = [o.register_device("phone", prekeys=5)["device_id"] for o in owners]
    _, mallory = users.new("mallory")
    with _on(guarded, mallory) as m:
        answers = [m.http.post(f"/e2ee/devices/{d}/claim") for d in devices]
    assert [a.status_code for a in answers] == [200] * PER_REQUESTER + [429]
    assert answers[-1].json()["limit"] == "claims_per_requester"


# ---- open streams lose revoked access -----------------------------------------------


def _revoke_token(database_url: str, token: str) -> None:
    from e2ee_ops.reference.auth import hash_token

    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s", (hash_token(token),)
        )


@pytest.mark.parametrize("revocation", ["token revoked", "device removed", "admin block"])
def test_an_open_stream_ends_when_access_is_revoked(  # type: ignore[no-untyped-def]
    revocation, reference_server, pair, admin, clean_db
) -> None:
    collector = StreamCollector(reference_server.url, pair["bob_token"], pair["b_dev"]).start()
    try:
        if revocation == "token revoked":
            _revoke_token(clean_db, pair["bob_token"])
        elif revocation == "device removed":
            pair["bob"].revoke_device(pair["b_dev"])
        else:
            admin.block(pair["bob_id"], "compromised")
        assert collector.ended.wait(10), "the stream stayed open"
        last = collector.snapshot()[-1]
        assert last.event == "closing" and last.data == {"reason": "access revoked"}
        assert collector.error is None
    finally:
        collector.close()


# ---- malformed input: 422 with the field's path, never 500 ---------------------------


def _device_body(name: str = "phone", key_id: int = 1) -> dict:  # type: ignore[type-arg]
    ident = DeviceIdentity()
    return {
        "device_name": name,
        "identity_key": ident.identity_public,
        "signed_prekey": ident.signed_prekey(),
        "one_time_prekeys": [{"key_id": key_id, "public_key": _b64(b"\x01" * 32)}],
    }


def test_malformed_input_is_a_422_naming_the_field(reference_server, pair, admin) -> None:  # type: ignore[no-untyped-def]
    alice, conv, a_dev, b_dev = pair["alice"], pair["conv"], pair["a_dev"], pair["b_dev"]
    envelope = {"device_id": b_dev, "bundle_version": 1, "ciphertext": _b64(b"c")}
    cases = [
        (
            alice,
            "POST",
            f"/dm/conversations/{conv}/messages",
            {"sender_device_id": a_dev, "client_message_id": "a\x00b", "envelopes": [envelope]},
            ["body", "client_message_id"],
        ),
        (
            alice,
            "POST",
            f"/dm/conversations/{conv}/messages",
            {"sender_device_id": a_dev, "client_message_id": "m", "envelopes": [envelope] * 2},
            ["body", "envelopes"],
        ),
        (alice, "POST", "/e2ee/devices", _device_body(name="ph\x00ne"), ["body", "device_name"]),
        (
            alice,
            "POST",
            "/e2ee/devices",
            _device_body(key_id=2**31),
            ["body", "one_time_prekeys", 0, "key_id"],
        ),
        (admin, "POST", "/admin/users", {"username": "u1", "email": "a\x00@b"}, ["body", "email"]),
        (
            admin,
            "POST",
            f"/admin/users/{pair['bob_id']}/block",
            {"reason": "\x00"},
            ["body", "reason"],
        ),
        (alice, "GET", f"/dm/devices/{a_dev}/messages?after={2**63}", None, ["query", "after"]),
        (alice, "POST", f"/dm/conversations/{2**63}/messages", {}, ["path", "conversation_id"]),
    ]
    for last_event_id in (str(2**63), "not-an-id"):
        answer = pair["bob"].http.get(
            f"/dm/devices/{b_dev}/stream", headers={"Last-Event-ID": last_event_id}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == "Last-Event-ID must be a message id"
    for client, method, path, body, loc in cases:
        answer = client.http.request(method, path, json=body)
        assert answer.status_code == 422, (path, answer.text)
        locs = [problem["loc"] for problem in answer.json()["detail"]]
        assert loc in locs, (path, locs)


def _refused_413(server: ReferenceServerProcess, admin_token: str) -> float:
    with ReferenceClient(server.url, admin_token) as admin:
        errors = admin.request("GET", "/dm/metrics")["errors"]
    return float(errors["by_status"].get("413", 0))


def test_a_body_over_the_limit_is_a_413_and_counted(guarded, pair, admin_token) -> None:  # type: ignore[no-untyped-def]
    path = f"/dm/conversations/{pair['conv']}/messages"
    big = b'{"pad": "' + b"x" * (MAX_BODY + 1) + b'"}'
    before = _refused_413(guarded, admin_token)
    with _on(guarded, pair["alice"]) as alice:
        declared = alice.http.post(path, content=big, headers={"Content-Type": "application/json"})
        # No Content-Length: counted as it streams in.
        streamed = alice.http.post(
            path,
            content=iter([big[:1000], big[1000:]]),
            headers={"Content-Type": "application/json"},
        )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json() == {"detail": f"request body over the limit of {MAX_BODY} bytes"}
    assert _refused_413(guarded, admin_token) == before + 2


# ---- closed streams: one debug line each, no flood -----------------------------------


def test_closed_streams_log_one_debug_line_each(guarded, pair, admin_token) -> None:  # type: ignore[no-untyped-def]
    streams = 12
    before = guarded.log_path.read_text() if guarded.log_path.exists() else ""
    clients = [httpx.Client(base_url=guarded.url, timeout=10) for _ in range(streams)]
    try:
        opened = []
        for client in clients:
            cm = client.stream(
                "GET",
                f"/dm/devices/{pair['b_dev']}/stream",
                headers={"Authorization": f"Bearer {pair['bob_token']}"},
            )
            response = cm.__enter__()
            next(response.iter_lines())
            opened.append(cm)
        for cm in opened:
            cm.__exit__(None, None, None)
    finally:
        for client in clients:
            client.close()

    def connections() -> float:
        metrics = httpx.get(
            guarded.url + "/live-chat/metrics", headers={"Authorization": f"Bearer {admin_token}"}
        ).json()
        return float(metrics["sse"]["connections"])

    deadline = time.monotonic() + 10
    while connections() > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert connections() == 0
    log = guarded.log_path.read_text()[len(before) :]
    assert "socket.send() raised exception" not in log
    closed = [ln for ln in log.splitlines() if f"SSE stream of device {pair['b_dev']} closed" in ln]
    assert len(closed) == streams
    assert all(" DEBUG " in ln for ln in closed)
