"""One hand-over statement for every stream a wake-up concerns: each stream gets its own
device's messages, each once, and nothing another stream of another device was given."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.relay import StreamHub, Subscription
from e2ee_ops.reference.store import HandOver, Row, Store


class CountingStore(Store):
    """The server's store, counting its hand-over statements and the streams of each."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, max_size=2)
        self.statements: list[int] = []

    async def hand_over_many(self, wanted: Sequence[HandOver], limit: int) -> list[list[Row]]:
        self.statements.append(len(wanted))
        return await super().hand_over_many(wanted, limit)


def _receivers(users: Any, count: int) -> tuple[Any, str, list[dict[str, Any]]]:
    """A sender with one device, and `count` receivers with a device and a conversation."""
    _, sender = users.new(f"sender-{uuid.uuid4().hex[:6]}")
    sender_device = sender.register_device("sender-phone")["device_id"]
    receivers = []
    for i in range(count):
        account_id, client = users.new(f"receiver-{i}-{uuid.uuid4().hex[:6]}")
        receivers.append(
            {
                "user": account_id,
                "device": uuid.UUID(client.register_device(f"phone-{i}")["device_id"]),
                "conv": sender.open_conversation(account_id),
            }
        )
    return sender, sender_device, receivers


def _send(sender: Any, sender_device: str, receiver: dict[str, Any], count: int) -> list[int]:
    return [
        int(sender.send(receiver["conv"], sender_device, receiver["user"])["message_id"])
        for _ in range(count)
    ]


async def _settled(hub: StreamHub) -> None:
    """Until the hub has handed over everything asked of it."""
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not hub._pending and (hub._task is None or hub._task.done()):
            return
    raise AssertionError("the hand-over did not settle")


def _take(sub: Subscription) -> list[int]:
    ids = [int(row["message_id"]) for row in sub.ready]
    sub.ready.clear()
    return ids


def test_streams_woken_together_each_get_their_own_messages_once_in_one_statement(
    users, database_url
) -> None:  # type: ignore[no-untyped-def]
    sender, sender_device, (b, c, d) = _receivers(users, 3)
    to_b, to_c = _send(sender, sender_device, b, 3), _send(sender, sender_device, c, 2)

    async def scenario() -> None:
        store = CountingStore(database_url)
        await store.open()
        try:
            hub = StreamHub(store)
            sub_b = hub.register(b["device"], "token-b", 0)
            sub_c = hub.register(c["device"], "token-c", 0)
            sub_d = hub.register(d["device"], "token-d", 0)
            await _settled(hub)
            assert store.statements == [3]  # the three new streams caught up in one statement
            assert (_take(sub_b), _take(sub_c), _take(sub_d)) == (to_b, to_c, [])
            assert sub_b.wake.is_set() and sub_c.wake.is_set() and not sub_d.wake.is_set()

            hub.wake([b["device"], c["device"], d["device"]])  # nothing new: nothing again
            await _settled(hub)
            assert store.statements == [3, 3]
            assert (_take(sub_b), _take(sub_c), _take(sub_d)) == ([], [], [])

            more_d = await asyncio.to_thread(_send, sender, sender_device, d, 2)
            hub.wake([b["device"], c["device"], d["device"]])
            await _settled(hub)
            assert (_take(sub_b), _take(sub_c), _take(sub_d)) == ([], [], more_d)
        finally:
            await store.close()

    asyncio.run(scenario())
    with psycopg.connect(libpq_url(database_url)) as conn:
        pushed = conn.execute(
            "SELECT count(*) FILTER (WHERE pushed_at IS NOT NULL), count(*) FROM dm_delivery"
            " WHERE device_id = ANY(%s)",
            ([b["device"], c["device"], d["device"]],),
        ).fetchone()
    assert pushed == (7, 7)


def test_two_streams_of_one_device_woken_together_each_get_its_messages_once(
    users, database_url
) -> None:  # type: ignore[no-untyped-def]
    sender, sender_device, (b,) = _receivers(users, 1)
    sent = _send(sender, sender_device, b, 3)

    async def scenario() -> None:
        store = CountingStore(database_url)
        await store.open()
        try:
            hub = StreamHub(store)
            first = hub.register(b["device"], "token-b", 0)
            second = hub.register(b["device"], "token-b", sent[0])  # resumed after the first
            await _settled(hub)
            assert store.statements == [2]
            assert (_take(first), _take(second)) == (sent, sent[1:])
            hub.wake([b["device"]])
            await _settled(hub)
            assert (_take(first), _take(second)) == ([], [])
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_hand_over_leaves_out_each_streams_own_exclusions_and_keeps_its_limit(
    users, database_url
) -> None:  # type: ignore[no-untyped-def]
    sender, sender_device, (b, c) = _receivers(users, 2)
    to_b, to_c = _send(sender, sender_device, b, 4), _send(sender, sender_device, c, 3)
    wanted = [
        HandOver(b["device"], 0, [to_b[0], to_b[2]]),
        HandOver(c["device"], to_c[0], [to_b[1]]),  # another stream's id: no effect
        HandOver(b["device"], to_b[0], []),
    ]

    async def scenario() -> tuple[list[list[int]], list[list[int]]]:
        store = Store(database_url, max_size=1)
        await store.open()
        try:
            together = await store.hand_over_many(wanted, limit=2)
            # Each alone: the one-stream statement, which must hand over the same rows.
            alone = [(await store.hand_over_many([w], limit=2))[0] for w in wanted]
        finally:
            await store.close()
        return (
            [[int(r["message_id"]) for r in rows] for rows in together],
            [[int(r["message_id"]) for r in rows] for rows in alone],
        )

    together, alone = asyncio.run(scenario())
    assert together == [[to_b[1], to_b[3]], to_c[1:], to_b[1:3]]
    assert alone == together
