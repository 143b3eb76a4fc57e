"""Policy: per-sender rate limits, user and admin blocks, the E2EE_DM_ENABLED flag,
graceful SSE closing on shutdown, and idempotent sends. Each server here is a real
uvicorn process on the session's PostgreSQL and Redis.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ApiFailure, ReferenceClient, StreamEvent, _b64

FAST = {
    "E2EE_HEARTBEAT_SECONDS": "0.3",
    "E2EE_METRICS_CACHE_SECONDS": "0",
    "E2EE_REDIS_RETRY_SECONDS": "0.2",
}
DISABLED_BODY = {"detail": "E2EE DM is not enabled"}


def _token(client: ReferenceClient) -> str:
    return client.http.headers["Authorization"].removeprefix("Bearer ")


def _count(url: str, query: str, params: tuple = ()) -> int:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def _server(database_url: str, redis_url: str, workdir: Path, **env: str) -> ReferenceServerProcess:
    return ReferenceServerProcess(
        database_url, redis_url, workdir / f"policy-{uuid.uuid4().hex[:6]}", env={**FAST, **env}
    )


@pytest.fixture(scope="module")
def limited_server(database_url, redis_url, workdir) -> Iterator[ReferenceServerProcess]:  # type: ignore[no-untyped-def]
    server = _server(
        database_url,
        redis_url,
        workdir,
        E2EE_RATE_LIMIT_MESSAGES="3",
        E2EE_RATE_LIMIT_WINDOW_SECONDS="60",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def disabled_server(database_url, redis_url, workdir) -> Iterator[ReferenceServerProcess]:  # type: ignore[no-untyped-def]
    server = _server(database_url, redis_url, workdir, E2EE_DM_ENABLED="false")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(users):  # type: ignore[no-untyped-def]
    """alice and bob, a device each, and their conversation (on the main server)."""
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    return {
        "alice_id": alice_id,
        "alice": alice,
        "a_dev": alice.register_device("alice-phone")["device_id"],
        "bob_id": bob_id,
        "bob": bob,
        "b_dev": bob.register_device("bob-phone")["device_id"],
        "conv": alice.open_conversation(bob_id),
    }


def _message_body(sender_device: str, recipient_device: str, client_message_id: str = "") -> dict:  # type: ignore[type-arg]
    return {
        "sender_device_id": sender_device,
        "client_message_id": client_message_id or uuid.uuid4().hex,
        "envelopes": [
            {"device_id": recipient_device, "bundle_version": 1, "ciphertext": _b64(b"c")}
        ],
    }


# ---- rate limit -------------------------------------------------------------------------


def test_fourth_send_in_the_window_is_rate_limited(limited_server, pair, database_url) -> None:  # type: ignore[no-untyped-def]
    with ReferenceClient(limited_server.url, _token(pair["alice"])) as alice:
        for _ in range(3):
            assert alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])["duplicate"] is False
        with pytest.raises(ApiFailure) as refused:
            alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])
        # The raw answer, for the header.
        raw = alice.http.post(
            f"/dm/conversations/{pair['conv']}/messages",
            json=_message_body(pair["a_dev"], pair["b_dev"]),
        )
    failure = refused.value
    assert failure.status_code == 429
    assert failure.body["detail"] == "rate limit exceeded"
    retry = failure.body["retry_in_seconds"]
    assert isinstance(retry, int) and 1 <= retry <= 60
    assert raw.status_code == 429
    assert int(raw.headers["Retry-After"]) == raw.json()["retry_in_seconds"]
    assert 1 <= int(raw.headers["Retry-After"]) <= 60

    assert _count(database_url, "SELECT count(*) FROM dm_messages") == 3
    assert (
        _count(
            database_url,
            "SELECT count(*) FROM dm_rate_limit_events WHERE user_id = %s"
            " AND occurred_at > now() - interval '1 minute'",
            (pair["alice_id"],),
        )
        == 2
    )
    # The limit is per sender: bob still sends on the same server.
    with ReferenceClient(limited_server.url, _token(pair["bob"])) as bob:
        assert bob.send(pair["conv"], pair["b_dev"], pair["alice_id"])["duplicate"] is False


def test_rate_limit_is_counted_in_metrics(limited_server, users, admin_token) -> None:  # type: ignore[no-untyped-def]
    _, carol_main = users.new("carol")
    dave_id, dave_main = users.new("dave")
    dave_main.register_device("dave-phone")
    with ReferenceClient(limited_server.url, _token(carol_main)) as carol:
        c_dev = carol.register_device("carol-phone")["device_id"]
        conv = carol.open_conversation(dave_id)
        codes = []
        for _ in range(5):
            try:
                carol.send(conv, c_dev, dave_id)
                codes.append(201)
            except ApiFailure as failure:
                codes.append(failure.status_code)
    assert codes == [201, 201, 201, 429, 429]
    with ReferenceClient(limited_server.url, admin_token) as admin:
        errors = admin.request("GET", "/dm/metrics")["errors"]
    assert errors["by_code"]["RATE_LIMITED"] >= 2
    assert errors["by_status"]["429"] >= 2


# ---- blocks -----------------------------------------------------------------------------


def test_user_block_refuses_the_blocked_sender(pair, database_url) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair["alice"], pair["bob"]
    r = bob.http.post("/dm/blocks", json={"user_id": pair["alice_id"]})
    assert r.status_code == 201
    assert r.json() == {"blocked_user_id": pair["alice_id"], "blocked": True}
    with pytest.raises(ApiFailure) as refused:
        alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])
    assert refused.value.status_code == 403
    assert refused.value.code == "BLOCKED_BY_RECIPIENT"
    assert _count(database_url, "SELECT count(*) FROM dm_messages") == 0
    # The block is one-way: bob can still write to alice.
    assert bob.send(pair["conv"], pair["b_dev"], pair["alice_id"])["duplicate"] is False
    # Blocking twice is harmless; unblocking restores sending.
    assert bob.http.post("/dm/blocks", json={"user_id": pair["alice_id"]}).status_code == 201
    r = bob.http.delete(f"/dm/blocks/{pair['alice_id']}")
    assert r.status_code == 200 and r.json()["blocked"] is False
    assert alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])["duplicate"] is False


def test_blocking_oneself_or_nobody_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    bob = pair["bob"]
    assert bob.http.post("/dm/blocks", json={"user_id": pair["bob_id"]}).status_code == 422
    assert bob.http.post("/dm/blocks", json={"user_id": 987654321}).status_code == 404


def test_admin_block_and_unblock(pair, admin) -> None:  # type: ignore[no-untyped-def]
    alice = pair["alice"]
    blocked = admin.block(pair["alice_id"], "abuse burst")
    assert blocked["blocked"] is True and blocked["block_reason"] == "abuse burst"
    assert blocked["blocked_at"] is not None
    with pytest.raises(ApiFailure) as refused:
        alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])
    assert refused.value.status_code == 403
    assert refused.value.code == "USER_BLOCKED"
    # Opening new conversations is refused as well.
    carol_id = admin.create_user("carol")
    r = alice.http.post("/dm/conversations", json={"peer_user_id": carol_id})
    assert r.status_code == 403 and r.json()["code"] == "USER_BLOCKED"
    assert admin.request("GET", f"/admin/users/{pair['alice_id']}")["blocked"] is True

    unblocked = admin.unblock(pair["alice_id"])
    assert unblocked["blocked"] is False and unblocked["block_reason"] is None
    assert alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])["duplicate"] is False


def test_admin_block_of_unknown_user_is_404(admin) -> None:  # type: ignore[no-untyped-def]
    r = admin.http.post("/admin/users/987654321/block", json={"reason": "x"})
    assert r.status_code == 404


# ---- feature flag -----------------------------------------------------------------------


def test_disabled_flag_refuses_every_dm_and_e2ee_call(disabled_server, pair) -> None:  # type: ignore[no-untyped-def]
    token = _token(pair["alice"])
    headers = {"Authorization": f"Bearer {token}"}
    base = disabled_server.url
    calls = [
        ("GET", "/dm/conversations", None),
        ("POST", "/dm/conversations", {"peer_user_id": pair["bob_id"]}),
        (
            "POST",
            f"/dm/conversations/{pair['conv']}/messages",
            _message_body(pair["a_dev"], pair["b_dev"]),
        ),
        ("GET", f"/dm/devices/{pair['a_dev']}/messages", None),
        ("POST", f"/dm/devices/{pair['a_dev']}/ack", {"message_ids": [1]}),
        ("POST", "/dm/blocks", {"user_id": pair["bob_id"]}),
        ("GET", "/e2ee/devices", None),
        ("POST", f"/e2ee/devices/{pair['b_dev']}/claim", None),
        ("GET", f"/e2ee/users/{pair['bob_id']}/devices", None),
    ]
    for method, path, body in calls:
        r = httpx.request(method, base + path, json=body, headers=headers, timeout=10)
        assert r.status_code == 403, path
        assert r.json() == DISABLED_BODY, path
    with ReferenceClient(base, token) as alice, pytest.raises(ApiFailure) as refused:
        next(iter(alice.stream(pair["a_dev"], read_timeout=5)))
    assert refused.value.status_code == 403
    assert refused.value.body == DISABLED_BODY


def test_runbook_rollback_check_body_is_exact(disabled_server, pair) -> None:  # type: ignore[no-untyped-def]
    """The runbook's curl: GET /dm/conversations with a user token."""
    r = httpx.get(
        disabled_server.url + "/dm/conversations",
        headers={"Authorization": f"Bearer {_token(pair['bob'])}"},
    )
    assert r.status_code == 403
    assert r.content == b'{"detail":"E2EE DM is not enabled"}'
    assert r.json() == DISABLED_BODY


def test_disabled_server_still_reports_health_and_metrics(
    disabled_server, pair, admin_token
) -> None:  # type: ignore[no-untyped-def]
    health = httpx.get(disabled_server.url + "/health")
    assert health.status_code == 200
    assert health.json()["e2ee_dm_enabled"] is False
    assert health.json()["status"] == "ok"
    with ReferenceClient(disabled_server.url, admin_token) as admin:
        httpx.get(
            disabled_server.url + "/dm/conversations",
            headers={"Authorization": f"Bearer {_token(pair['alice'])}"},
        )
        metrics = admin.request("GET", "/dm/metrics")
        assert metrics["e2ee_dm_enabled"] is False
        assert metrics["otpk_pools"]["devices_active"] == 2
        assert metrics["errors"]["by_code"].get("DM_DISABLED", 0) >= 1
        assert admin.request("GET", "/live-chat/metrics")["redis_status"] == "ok"
        # Admin endpoints are not DM endpoints: they keep working.
        assert admin.request("GET", f"/admin/users/{pair['alice_id']}")["username"] == "alice"
    prom = httpx.get(disabled_server.url + "/metrics").text
    assert "\ne2ee_dm_enabled 0.0\n" in prom
    # The main server, same database, is unaffected.
    assert pair["alice"].conversations()[0]["conversation_id"] == pair["conv"]


def test_disabled_flag_refuses_unauthenticated_calls_too(disabled_server) -> None:  # type: ignore[no-untyped-def]
    """The flag is checked before the token: a disabled feature answers the same to all."""
    for path in ("/dm/conversations", "/e2ee/devices"):
        r = httpx.get(disabled_server.url + path)
        assert r.status_code == 403
        assert r.json() == DISABLED_BODY


# ---- SSE closing on shutdown ------------------------------------------------------------


class _Reader:
    def __init__(self, client: ReferenceClient, device_id: str) -> None:
        self.client = client
        self.device_id = device_id
        self.events: list[StreamEvent] = []
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.client.stream(self.device_id, read_timeout=20):
                self.events.append(event)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def wait(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.events)):
                return True
            time.sleep(0.02)
        return False


def test_stream_gets_closing_on_shutdown_then_flag_refuses(
    database_url, redis_url, workdir, pair
) -> None:  # type: ignore[no-untyped-def]
    server = _server(database_url, redis_url, workdir)
    server.start()
    try:
        token = _token(pair["bob"])
        with ReferenceClient(server.url, token) as bob:
            reader = _Reader(bob, pair["b_dev"])
            assert reader.wait(lambda evs: any(e.event == "heartbeat" for e in evs), 10)
            # A message pushed on this server before shutdown.
            sent = pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])
            assert reader.wait(lambda evs: any(e.event == "message" for e in evs), 10)

            asked = time.monotonic()
            server.stop()
            stopped = time.monotonic()
            reader.thread.join(timeout=10)
            assert not reader.thread.is_alive()
        assert reader.error is None, reader.error
        kinds = [e.event for e in reader.events]
        assert kinds[-1] == "closing", kinds
        assert reader.events[-1].data == {"reason": "server shutting down"}
        assert [e.id for e in reader.events if e.event == "message"] == [str(sent["message_id"])]
        assert reader.ended_at is not None
        # Ended by the closing event, not by the 5 s graceful-shutdown timeout.
        assert reader.ended_at - asked < 2.5
        assert stopped - asked < 4.0

        server.start(overrides={"E2EE_DM_ENABLED": "false"})
        with ReferenceClient(server.url, token) as bob, pytest.raises(ApiFailure) as refused:
            next(iter(bob.stream(pair["b_dev"], read_timeout=5)))
        assert refused.value.status_code == 403
        assert refused.value.body == DISABLED_BODY
        assert httpx.get(server.url + "/health").json()["e2ee_dm_enabled"] is False
    finally:
        server.stop()
    # The message stays unacknowledged in PostgreSQL for the next connection.
    assert pair["bob"].poll(pair["b_dev"])["messages"][0]["message_id"] == sent["message_id"]


# ---- idempotency ------------------------------------------------------------------------


def test_repeated_client_message_id_stores_one_message(pair, database_url) -> None:  # type: ignore[no-untyped-def]
    alice = pair["alice"]
    first = alice.http.post(
        f"/dm/conversations/{pair['conv']}/messages",
        json=_message_body(pair["a_dev"], pair["b_dev"], client_message_id="retry-me"),
    )
    again = alice.http.post(
        f"/dm/conversations/{pair['conv']}/messages",
        json=_message_body(pair["a_dev"], pair["b_dev"], client_message_id="retry-me"),
    )
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["message_id"] == first.json()["message_id"]
    assert again.json()["created_at"] == first.json()["created_at"]
    assert (
        _count(
            database_url,
            "SELECT count(*) FROM dm_messages WHERE client_message_id = 'retry-me'",
        )
        == 1
    )
    assert _count(database_url, "SELECT count(*) FROM dm_delivery") == 1
    assert _count(database_url, "SELECT count(*) FROM dm_envelopes") == 1
    assert [m["message_id"] for m in pair["bob"].poll(pair["b_dev"])["messages"]] == [
        first.json()["message_id"]
    ]
    # The same id from another sender is another message.
    other = pair["bob"].http.post(
        f"/dm/conversations/{pair['conv']}/messages",
        json=_message_body(pair["b_dev"], pair["a_dev"], client_message_id="retry-me"),
    )
    assert other.status_code == 201 and other.json()["duplicate"] is False
