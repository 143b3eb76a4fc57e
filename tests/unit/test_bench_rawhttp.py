"""bench/rawhttp.py, the load generator's HTTP client, against servers on real loopback
sockets that answer exactly the bytes each test needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from fastapi.sse import format_sse_event

from bench import rawhttp, traffic

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serving(handler: Handler, scenario: Callable[[rawhttp.Origin], Awaitable[None]]) -> None:
    """Runs `scenario` against a server whose connections `handler` serves; a connection
    the client closes ends its handler, and every connection is closed after it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await scenario(rawhttp.Origin("127.0.0.1", port))
    finally:
        server.close()
        await server.wait_closed()


def _request(origin: rawhttp.Origin, body: bytes = b"{}") -> bytes:
    head = rawhttp.request_head("POST", origin, "/x", {"Authorization": "Bearer t"}, body=True)
    return head + b"%d\r\n\r\n" % len(body) + body


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    _, headers = rawhttp.parse_head(b"HTTP/1.1 200 -\r\n" + head.split(b"\r\n", 1)[1])
    return head + await reader.readexactly(int(headers[b"content-length"]))


def test_a_pool_reuses_its_kept_alive_connection_for_the_next_request() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            await _read_request(reader)
            writer.write(OK)

    async def scenario(origin: rawhttp.Origin) -> None:
        pool = rawhttp.Pool(origin, 4)
        first = await pool.request(_request(origin))
        second = await pool.request(_request(origin))
        await pool.aclose()
        assert (first.status, first.body, second.status, second.body) == (200, b"{}", 200, b"{}")
        assert (pool.opened, pool.resent) == (1, 0)

    asyncio.run(_serving(handler, scenario))
    assert connections == 1


def test_a_request_on_a_connection_the_server_closed_while_idle_is_resent_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()
        writer.close()  # keep-alive ended by the server, without a Connection: close header

    async def scenario(origin: rawhttp.Origin) -> None:
        pool = rawhttp.Pool(origin, 4)
        await pool.request(_request(origin))
        await asyncio.sleep(0.05)  # the close has arrived
        second = await pool.request(_request(origin))
        await pool.aclose()
        assert second.status == 200
        assert (pool.opened, pool.resent) == (2, 1)

    asyncio.run(_serving(handler, scenario))


def test_a_request_the_server_closes_on_unanswered_is_resent_once_on_a_new_connection() -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await _read_request(reader))
        writer.write(OK)
        await writer.drain()
        requests.append(await _read_request(reader))
        writer.close()  # the keep-alive race: the next request read, then the close

    async def scenario(origin: rawhttp.Origin) -> None:
        pool = rawhttp.Pool(origin, 4)
        await pool.request(_request(origin, b'{"n":1}'))
        second = await pool.request(_request(origin, b'{"n":2}'))
        await pool.aclose()
        assert second.status == 200
        assert (pool.opened, pool.resent) == (2, 1)

    asyncio.run(_serving(handler, scenario))
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in requests] == [b'{"n":1}', b'{"n":2}', b'{"n":2}']


def test_a_connection_idle_longer_than_the_keepalive_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(OK)

    async def scenario(origin: rawhttp.Origin) -> None:
        pool = rawhttp.Pool(origin, 4, keepalive=0.0)
        await pool.request(_request(origin))
        await pool.request(_request(origin))
        await pool.aclose()
        assert (pool.opened, pool.resent) == (2, 0)

    asyncio.run(_serving(handler, scenario))


def test_an_answer_without_content_length_is_refused_by_name() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario(origin: rawhttp.Origin) -> None:
        pool = rawhttp.Pool(origin, 1)
        with pytest.raises(rawhttp.HttpError, match="^HTTP 200 without Content-Length$"):
            await pool.request(_request(origin))
        await pool.aclose()

    asyncio.run(_serving(handler, scenario))


def test_a_chunked_body_fed_byte_by_byte_decodes_to_its_chunks_and_ends() -> None:
    body = rawhttp.ChunkedBody()
    wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nworld\r\n\r\nok\r\n0\r\n\r\n"
    decoded = b"".join(body.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert decoded == b"hello world\r\n\r\nok"
    assert body.ended


def test_a_chunk_not_followed_by_crlf_is_an_error() -> None:
    with pytest.raises(rawhttp.HttpError, match="^a chunk not followed by CRLF$"):
        rawhttp.ChunkedBody().feed(b"2\r\nabXY")


def test_a_message_event_as_the_server_writes_it_gives_its_id_and_created_at() -> None:
    created_at = "2026-11-29T05:00:00.123456+00:00"
    data = '{"message_id":41,"conversation_id":7,"created_at":"%s","ciphertext":"QQ=="}'
    wire = format_sse_event(data_str=data % created_at, event="message", id="41")
    assert traffic.parse_event(wire.rstrip(b"\n")) == ("message", 41, created_at)


def test_another_event_gives_its_name_and_data() -> None:
    wire = format_sse_event(data_str='{"reason":"access revoked"}', event="closing")
    assert traffic.parse_event(wire.rstrip(b"\n")) == ("closing", 0, '{"reason":"access revoked"}')


def test_a_message_written_otherwise_is_read_from_its_json() -> None:
    block = b'id: 41\ndata:{"message_id":41,"created_at":"then"}'
    assert traffic.parse_event(block) == ("message", 41, "then")


def test_a_comment_block_is_no_event() -> None:
    assert traffic.parse_event(b": ping") == ("", 0, "")


def test_sse_events_split_across_reads_and_chunks_arrive_whole_and_in_order() -> None:
    events = [
        format_sse_event(data_str='{"ts":"now"}', event="heartbeat"),
        format_sse_event(data_str='{"message_id":1,"created_at":"a"}', event="message", id="1"),
        format_sse_event(data_str='{"message_id":2,"created_at":"b"}', event="message", id="2"),
    ]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(0, len(wire), 7):  # cut anywhere: head, chunk sizes, events
            writer.write(wire[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    got: list[traffic.Event] = []

    async def scenario(origin: rawhttp.Origin) -> None:
        request = rawhttp.request_head("GET", origin, "/stream", {}, body=False)
        sse = await rawhttp.open_sse(origin, request, lambda b: got.append(traffic.parse_event(b)))
        await sse.closed

    asyncio.run(_serving(handler, scenario))
    assert got == [("heartbeat", 0, '{"ts":"now"}'), ("message", 1, "a"), ("message", 2, "b")]


def test_a_stream_refused_with_403_ends_with_that_status() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def scenario(origin: rawhttp.Origin) -> None:
        request = rawhttp.request_head("GET", origin, "/stream", {}, body=False)
        sse = await rawhttp.open_sse(origin, request, lambda b: None)
        with pytest.raises(rawhttp.HttpError, match="^stream answered 403$"):
            await sse.closed

    asyncio.run(_serving(handler, scenario))


def test_a_cumulative_ack_names_the_ids_above_the_last_arrival_in_a_second_request() -> None:
    assert traffic.ack_requests([5, 7, 6], cumulative=True) == [([6], True), ([7], False)]
    assert traffic.ack_requests([5, 6, 7], cumulative=True) == [([7], True)]
    assert traffic.ack_requests([5, 7, 6], cumulative=False) == [([5, 7, 6], False)]
