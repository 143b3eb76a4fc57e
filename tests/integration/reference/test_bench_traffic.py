"""The load generator of bench/sse_load.py against the real reference server: both of its
generators deliver, count and acknowledge exactly what was sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from bench import traffic
from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ReferenceClient

RECEIVERS = 3
PER_RECEIVER = 4
# Far longer than a backlog takes to arrive: what arrives together is acknowledged together.
ACK_DELAY = 1.0


def _links(admin: ReferenceClient, url: str) -> list[traffic.Link]:
    (sender,) = traffic.make_parties(admin, [url], 1, "sender")
    receivers = traffic.make_parties(admin, [url], RECEIVERS, "receiver")
    return [traffic.link(sender, r) for r in receivers]


async def _until(done: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not done():
            await asyncio.sleep(0.05)


async def _deliver(
    name: str, links: list[traffic.Link]
) -> tuple[set[int], set[int], traffic.Received, list[int]]:
    """A backlog of PER_RECEIVER messages for each receiver, then its stream opened, then
    one message more each while the streams are open."""
    gen = traffic.GENERATORS[name](streams=len(links), in_flight=4, ack_connections=2)
    received = traffic.Received()
    readies = [asyncio.Event() for _ in links]
    followers: list[asyncio.Task[None]] = []
    try:
        backlog = {await gen.send(lk) for lk in links for _ in range(PER_RECEIVER)}
        followers = [
            asyncio.create_task(
                traffic.follow(
                    gen, lk.receiver, received, ready, cumulative=True, ack_delay=ACK_DELAY
                )
            )
            for lk, ready in zip(links, readies, strict=True)
        ]
        await _until(lambda: backlog <= set(received.counts) and received.acks == len(links))
        live = set(await asyncio.gather(*(gen.send(lk) for lk in links)))
        await _until(lambda: live <= set(received.counts) and received.acks == 2 * len(links))
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await gen.aclose()
    # What each receiver's server side still holds unacknowledged.
    pending = []
    for lk in links:
        with ReferenceClient(lk.receiver.base_url, lk.receiver.token) as client:
            pending.append(len(client.poll(lk.receiver.device_id)["messages"]))
    return backlog, live, received, pending


@pytest.mark.integration
@pytest.mark.parametrize("name", ["raw", "httpx"])
def test_each_message_arrives_once_and_one_cumulative_ack_per_batch_clears_the_backlog(
    name: str, reference_server: ReferenceServerProcess, admin: ReferenceClient
) -> None:
    links = _links(admin, reference_server.url)
    backlog, live, received, pending = asyncio.run(_deliver(name, links))
    sent = backlog | live
    assert (len(backlog), len(live)) == (RECEIVERS * PER_RECEIVER, RECEIVERS)
    assert received.verdict(sent) == (0, 0)
    assert received.errors == []
    assert received.acks == 2 * RECEIVERS  # the backlog in one ack, the live message in one
    assert pending == [0] * RECEIVERS
    assert len(received.latencies_ms(sent)) == len(sent)


@pytest.mark.integration
def test_a_raw_send_resent_with_its_client_message_id_is_stored_and_delivered_once(
    reference_server: ReferenceServerProcess, admin: ReferenceClient
) -> None:
    (lk,) = _links(admin, reference_server.url)[:1]

    async def twice() -> list[tuple[int, dict[str, object]]]:
        gen = traffic.RawGenerator(streams=1, in_flight=1, ack_connections=1)
        before, after = gen._send_template(lk)
        data = before + b"0123456789abcdef01234567" + after  # one client_message_id
        pool = gen._pool("send", lk.sender.base_url)
        try:
            answers = [await pool.request(data) for _ in range(2)]
        finally:
            await gen.aclose()
        return [(a.status, json.loads(a.body)) for a in answers]

    (first_status, first), (second_status, second) = asyncio.run(twice())
    assert (first_status, first["duplicate"]) == (201, False)
    assert (second_status, second["duplicate"]) == (200, True)
    assert second["message_id"] == first["message_id"]
    with ReferenceClient(lk.receiver.base_url, lk.receiver.token) as client:
        held = client.poll(lk.receiver.device_id)["messages"]
    assert [m["message_id"] for m in held] == [first["message_id"]]


@pytest.mark.integration
def test_messages_that_arrived_out_of_id_order_are_all_cleared_by_the_acks_of_their_batch(
    reference_server: ReferenceServerProcess, admin: ReferenceClient
) -> None:
    (lk,) = _links(admin, reference_server.url)[:1]
    receiver = lk.receiver
    with ReferenceClient(lk.sender.base_url, lk.sender.token) as sender:
        first, second = (
            sender.send(lk.conversation_id, lk.sender.device_id, receiver.account_id)["message_id"]
            for _ in range(2)
        )
    assert first < second
    with ReferenceClient(receiver.base_url, receiver.token) as client:
        # The later id handed over first, then the earlier one: arrival order [second, first].
        assert [
            m["message_id"] for m in client.poll(receiver.device_id, after=first)["messages"]
        ] == [second]
        # Both unacknowledged; the second keeps the earlier hand-over time.
        assert [m["message_id"] for m in client.poll(receiver.device_id)["messages"]] == [
            first,
            second,
        ]
        requests = traffic.ack_requests([second, first], cumulative=True)
        assert requests == [([first], True), ([second], False)]

        async def acknowledge(only_first: bool) -> None:
            gen = traffic.RawGenerator(streams=1, in_flight=1, ack_connections=1)
            try:
                for ids, up_to in requests[:1] if only_first else requests:
                    await gen.ack(receiver, ids, cumulative=up_to)
            finally:
                await gen.aclose()

        # `up_to` the last arrival alone leaves the earlier-arrived, higher id pending.
        asyncio.run(acknowledge(only_first=True))
        assert [m["message_id"] for m in client.poll(receiver.device_id)["messages"]] == [second]
        asyncio.run(acknowledge(only_first=False))
        assert client.poll(receiver.device_id)["messages"] == []
