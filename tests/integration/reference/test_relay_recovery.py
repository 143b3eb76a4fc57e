"""The relay recovers by itself when Redis answers again after a stall (CLIENT PAUSE) or
after its pub/sub connection was killed (CLIENT KILL TYPE pubsub): no restart, and
what was stored meanwhile is delivered."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from .streams import StreamCollector


def _metrics(url: str, token: str) -> dict[str, Any]:
    answer = httpx.get(url + "/dm/metrics", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _healthy(url: str, token: str) -> bool:
    m = _metrics(url, token)
    return m["redis_status"] == "ok" and m["relay_lag"] is False


def _messages(collector: StreamCollector) -> int:
    return len(collector.message_ids())


@pytest.mark.parametrize("traffic", [True, False], ids=["send-during-stall", "quiet-stall"])
def test_relay_recovers_after_a_client_pause(
    traffic, reference_server, controllable_redis, pair, admin_token
) -> None:  # type: ignore[no-untyped-def]
    url, p = reference_server.url, pair
    assert _wait(lambda: _healthy(url, admin_token), 10)
    collector = StreamCollector(url, p["bob_token"], p["b_dev"]).start()
    try:
        with redis.Redis.from_url(controllable_redis.url) as r:
            r.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        if traffic:
            stalled = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
            assert stalled["relayed"] is False
            assert _metrics(url, admin_token)["relay_lag"] is True
        else:
            # Only the relay's own probe notices the stall, and nothing is sent until
            # Redis answers again (a PING waits for the end of the pause).
            assert _wait(lambda: _metrics(url, admin_token)["relay_lag"] is True, 10)
            with redis.Redis.from_url(controllable_redis.url, socket_timeout=10) as r:
                assert r.ping()
            assert _wait(lambda: _healthy(url, admin_token), 20), _metrics(url, admin_token)
            stalled = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
        # Redis answers again after the pause, nobody restarts anything.
        assert _wait(lambda: _healthy(url, admin_token), 20), _metrics(url, admin_token)
        assert collector.wait_for(lambda evs: stalled["message_id"] in collector.message_ids(), 10)
        after = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
        assert after["relayed"] is True
        assert collector.wait_for(lambda evs: after["message_id"] in collector.message_ids(), 10)
    finally:
        collector.close()


def test_relay_recovers_after_its_pubsub_connection_is_killed(
    reference_server, controllable_redis, pair, admin_token
) -> None:  # type: ignore[no-untyped-def]
    url, p = reference_server.url, pair
    assert _wait(lambda: _healthy(url, admin_token), 10)
    collector = StreamCollector(url, p["bob_token"], p["b_dev"]).start()
    try:
        with redis.Redis.from_url(controllable_redis.url) as r:
            killed = r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert int(killed) >= 1
            # Until the relay subscribes again nobody hears a publish.
            sent = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
            assert _wait(
                lambda: int(r.execute_command("PUBSUB", "NUMSUB", "e2ee:dm:deliver")[1]) >= 1, 10
            )
        assert _wait(lambda: _healthy(url, admin_token), 20), _metrics(url, admin_token)
        assert collector.wait_for(lambda evs: sent["message_id"] in collector.message_ids(), 10)
        after = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
        assert collector.wait_for(lambda evs: after["message_id"] in collector.message_ids(), 10)
    finally:
        collector.close()
