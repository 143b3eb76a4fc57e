"""Delivery over SSE: ids, resume, acks, polling, and several API processes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.relay import STREAM_BATCH

from .streams import StreamCollector


def test_stream_delivers_each_message_once_with_its_id(reference_server, pair) -> None:
    collector = StreamCollector(reference_server.url, pair["bob_token"], pair["b_dev"]).start()
    try:
        sent = [
            pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"]
            for _ in range(5)
        ]
        assert collector.wait_for(
            lambda evs: len([e for e in evs if e.event == "message"]) >= 5, 10
        )
        assert collector.message_ids() == sent
        assert all(
            e.id == str(e.data["message_id"]) for e in collector.snapshot() if e.event == "message"
        )
        assert all(hb.data["relay_lag"] is False for hb in collector.heartbeats())
    finally:
        collector.close()


def test_a_backlog_of_several_batches_streams_each_message_once_in_order(
    reference_server, pair, clean_db
) -> None:
    # Stored while the device was offline: more than two of the stream's batches.
    count = 2 * STREAM_BATCH + 50
    with psycopg.connect(libpq_url(clean_db), autocommit=True) as conn:
        rows = conn.execute(
            "WITH m AS (INSERT INTO dm_messages (conversation_id, sender_user_id,"
            " sender_device_id, client_message_id)"
            " SELECT %s, created_by, %s, 'backlog-' || g"
            " FROM dm_conversations, generate_series(1, %s) g WHERE conversation_id = %s"
            " RETURNING id),"
            " e AS (INSERT INTO dm_envelopes (message_id, device_id, bundle_version, ciphertext)"
            " SELECT id, %s, 1, '\\x00' FROM m)"
            " INSERT INTO dm_delivery (message_id, device_id, recipient_user_id)"
            " SELECT id, %s, %s FROM m RETURNING message_id",
            (
                pair["conv"],
                pair["a_dev"],
                count,
                pair["conv"],
                pair["b_dev"],
                pair["b_dev"],
                pair["bob_id"],
            ),
        ).fetchall()
    stored = sorted(int(r[0]) for r in rows)
    collector = StreamCollector(reference_server.url, pair["bob_token"], pair["b_dev"]).start()
    try:
        assert collector.wait_for(
            lambda evs: len([e for e in evs if e.event == "message"]) >= count, 30
        )
        time.sleep(0.3)  # room for a duplicate to show
        assert collector.message_ids() == stored
    finally:
        collector.close()


def test_ack_marks_delivery_and_poll_serves_only_unacked(reference_server, pair, clean_db) -> None:
    ids = [
        pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"]
        for _ in range(3)
    ]
    polled = pair["bob"].poll(pair["b_dev"])
    assert [m["message_id"] for m in polled["messages"]] == ids
    assert polled["relay_lag"] is False
    assert pair["bob"].ack(pair["b_dev"], ids[:2]) == 2
    assert pair["bob"].ack(pair["b_dev"], ids[:2]) == 0  # acking twice changes nothing
    assert [m["message_id"] for m in pair["bob"].poll(pair["b_dev"])["messages"]] == ids[2:]
    with psycopg.connect(libpq_url(clean_db)) as conn:
        rows = conn.execute(
            "SELECT message_id, delivered_at IS NOT NULL FROM dm_delivery ORDER BY message_id"
        ).fetchall()
    assert rows == [(ids[0], True), (ids[1], True), (ids[2], False)]


def test_last_event_id_resumes_after_that_message(reference_server, pair) -> None:
    ids = [
        pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"]
        for _ in range(4)
    ]
    seen = []
    for event in pair["bob"].stream(pair["b_dev"], last_event_id=str(ids[1]), read_timeout=5):
        if event.event == "message":
            seen.append(int(event.id or 0))
        if len(seen) == 2:
            break
    assert seen == ids[2:]


@pytest.fixture
def second_server(database_url, redis_url, workdir) -> Iterator[ReferenceServerProcess]:  # type: ignore[no-untyped-def]
    from tests.conftest import SERVER_ENV

    server = ReferenceServerProcess(
        database_url, redis_url, workdir / "server-b", env=dict(SERVER_ENV)
    )
    server.start()
    yield server
    server.stop()


def test_instances_deliver_to_each_others_streams(reference_server, second_server, pair) -> None:
    # Bob listens on instance B; Alice sends through instance A.
    collector = StreamCollector(second_server.url, pair["bob_token"], pair["b_dev"]).start()
    try:
        message_id = pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"]
        assert collector.wait_for(lambda evs: any(e.event == "message" for e in evs), 10)
        assert collector.message_ids() == [message_id]
    finally:
        collector.close()
