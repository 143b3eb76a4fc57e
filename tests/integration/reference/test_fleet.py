"""Two reference server instances on one PostgreSQL and one Redis, as real processes:
a message sent through one reaches a stream on the other (also after a Redis outage),
and a rate limit holds for the fleet, not per instance, while Redis answers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ReferenceClient

from .streams import StreamCollector

LIMIT = 4


@pytest.fixture(scope="module")
def fleet(
    database_url: str, redis_url: str, workdir: Path
) -> Iterator[list[ReferenceServerProcess]]:
    servers = [
        ReferenceServerProcess(
            database_url,
            redis_url,
            workdir / f"fleet-{i}-{uuid.uuid4().hex[:6]}",
            env={
                "E2EE_HEARTBEAT_SECONDS": "0.3",
                "E2EE_METRICS_CACHE_SECONDS": "0",
                "E2EE_REDIS_RETRY_SECONDS": "0.2",
                "E2EE_RATE_LIMIT_MESSAGES": str(LIMIT),
                "E2EE_CLAIM_LIMIT_PER_REQUESTER": "10000",
            },
        )
        for i in (1, 2)
    ]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def _token(client: ReferenceClient) -> str:
    return client.http.headers["Authorization"].removeprefix("Bearer ")


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _mode(server: ReferenceServerProcess, admin_token: str) -> str:
    body = httpx.get(
        server.url + "/dm/metrics", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()
    return str(body["rate_limit_mode"])


def _redis_ok(server: ReferenceServerProcess, admin_token: str) -> bool:
    body = httpx.get(
        server.url + "/dm/metrics", headers={"Authorization": f"Bearer {admin_token}"}
    ).json()
    return bool(body["redis_status"] == "ok" and body["relay_lag"] is False)


def test_a_message_sent_through_one_instance_reaches_a_stream_on_the_other(
    fleet, pair, controllable_redis, admin_token
) -> None:  # type: ignore[no-untyped-def]
    one, two = fleet
    p = pair
    collector = StreamCollector(two.url, p["bob_token"], p["b_dev"]).start()
    try:
        with ReferenceClient(one.url, _token(p["alice"])) as alice:
            first = alice.send(p["conv"], p["a_dev"], p["bob_id"])
            assert first["relayed"] is True
            assert collector.wait_for(lambda e: first["message_id"] in collector.message_ids(), 10)

            controllable_redis.stop()
            during = alice.send(p["conv"], p["a_dev"], p["bob_id"])
            assert during["relayed"] is False
            controllable_redis.start()
            # Instance 2 learns of it only through its own recovery: it catches up.
            assert collector.wait_for(lambda e: during["message_id"] in collector.message_ids(), 15)
            assert _wait(lambda: all(_redis_ok(s, admin_token) for s in fleet), 15)
            after = alice.send(p["conv"], p["a_dev"], p["bob_id"])
            assert after["relayed"] is True
            assert collector.wait_for(lambda e: after["message_id"] in collector.message_ids(), 10)
        assert collector.message_ids() == [
            first["message_id"],
            during["message_id"],
            after["message_id"],
        ]
    finally:
        collector.close()


def test_the_rate_limit_holds_for_the_fleet_then_per_process_without_redis(
    fleet, pair, controllable_redis, admin_token
) -> None:  # type: ignore[no-untyped-def]
    one, two = fleet
    p = pair
    assert _wait(lambda: all(_redis_ok(s, admin_token) for s in fleet), 15)
    clients = [ReferenceClient(s.url, _token(p["alice"])) for s in fleet]
    try:
        statuses = []
        for i in range(LIMIT + 2):  # alternate instances
            answer = clients[i % 2].http.post(
                f"/dm/conversations/{p['conv']}/messages",
                json={
                    "sender_device_id": p["a_dev"],
                    "client_message_id": uuid.uuid4().hex,
                    "envelopes": [
                        {"device_id": p["b_dev"], "bundle_version": 1, "ciphertext": "AA=="}
                    ],
                },
            )
            statuses.append(answer.status_code)
        # LIMIT in all, not LIMIT per instance.
        assert statuses == [201] * LIMIT + [429, 429]
        assert {_mode(s, admin_token) for s in fleet} == {"shared"}

        controllable_redis.stop()
        # Without Redis each instance counts alone, and says so.
        assert _wait(lambda: all(not _redis_ok(s, admin_token) for s in fleet), 10)
        fresh_id = uuid.uuid4().hex
        answer = clients[0].http.post(
            f"/dm/conversations/{p['conv']}/messages",
            json={
                "sender_device_id": p["a_dev"],
                "client_message_id": fresh_id,
                "envelopes": [{"device_id": p["b_dev"], "bundle_version": 1, "ciphertext": "AA=="}],
            },
        )
        assert answer.status_code == 201
        assert _mode(one, admin_token) == "per_process"
        controllable_redis.start()
        assert _wait(lambda: all(_redis_ok(s, admin_token) for s in fleet), 15)
        clients[0].http.post(
            f"/dm/conversations/{p['conv']}/messages",
            json={
                "sender_device_id": p["a_dev"],
                "client_message_id": uuid.uuid4().hex,
                "envelopes": [{"device_id": p["b_dev"], "bundle_version": 1, "ciphertext": "AA=="}],
            },
        )
        assert _mode(one, admin_token) == "shared"
    finally:
        for c in clients:
            c.close()
