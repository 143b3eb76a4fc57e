"""A real Redis outage: the redis-server process is stopped mid-traffic and restarted."""

from __future__ import annotations

import time

import httpx
import psycopg

from e2ee_ops.dburl import libpq_url

from .streams import StreamCollector


def _admin_metrics(url: str, token: str) -> dict:  # type: ignore[type-arg]
    response = httpx.get(url + "/dm/metrics", headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_messages_sent_during_outage_are_stored_then_delivered_once(
    reference_server,
    controllable_redis,
    pair,
    admin_token,
    clean_db,
) -> None:
    p = pair
    collector = StreamCollector(reference_server.url, p["bob_token"], p["b_dev"]).start()
    try:
        before = [
            p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])["message_id"] for _ in range(3)
        ]
        assert collector.wait_for(
            lambda evs: len([e for e in evs if e.event == "message"]) >= 3, 10
        )

        controllable_redis.stop()
        during = []
        for _ in range(5):
            answer = p["alice"].send(p["conv"], p["a_dev"], p["bob_id"])
            during.append(answer["message_id"])
        assert answer["relayed"] is False

        # Heartbeats and metrics report the outage; nothing sent meanwhile was pushed.
        assert collector.wait_for(
            lambda evs: any(e.event == "heartbeat" and e.data["relay_lag"] for e in evs), 10
        )
        lagging = [e for e in collector.heartbeats() if e.data["relay_lag"]]
        assert lagging[-1].data["redis_status"] == "unavailable"
        metrics = _admin_metrics(reference_server.url, admin_token)
        assert metrics["redis_status"] == "unavailable" and metrics["relay_lag"] is True
        assert metrics["message_stats"]["undelivered_last_5_minutes"] == 5
        assert collector.message_ids() == before
        with psycopg.connect(libpq_url(clean_db)) as conn:
            stored = conn.execute(
                "SELECT count(*) FROM dm_messages WHERE id = ANY(%s)", (during,)
            ).fetchone()
        assert stored == (5,)
        health = httpx.get(reference_server.url + "/health").json()
        assert health["redis"] == "unavailable" and health["status"] == "degraded"

        controllable_redis.start()
        assert collector.wait_for(
            lambda evs: len([e for e in evs if e.event == "message"]) >= 8, 15
        )
        time.sleep(0.5)  # anything duplicated would show up by now
        ids = collector.message_ids()
        assert ids == before + during  # every message, exactly once, in order
        assert _wait(
            lambda: _admin_metrics(reference_server.url, admin_token)["relay_lag"] is False, 10
        )
        assert collector.wait_for(
            lambda evs: [e for e in evs if e.event == "heartbeat"][-1].data["relay_lag"] is False,
            10,
        )
        assert _wait(
            lambda: (
                _admin_metrics(reference_server.url, admin_token)["message_stats"][
                    "undelivered_last_5_minutes"
                ]
                == 0
            ),
            10,
        )
        assert collector.error is None
    finally:
        collector.close()


def test_prometheus_redis_up_follows_the_outage(reference_server, controllable_redis) -> None:
    def redis_up() -> float:
        text = httpx.get(reference_server.url + "/metrics").text
        line = next(ln for ln in text.splitlines() if ln.startswith("e2ee_redis_up "))
        return float(line.split()[1])

    assert redis_up() == 1.0
    controllable_redis.stop()
    assert _wait(lambda: redis_up() == 0.0, 10)
    controllable_redis.start()
    assert _wait(lambda: redis_up() == 1.0, 10)
