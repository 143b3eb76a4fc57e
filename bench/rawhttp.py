"""HTTP/1.1 for the load generator, on bare asyncio connections: requests encoded once as
bytes, answers read by hand (status line, headers, a Content-Length body), keep-alive
connections in small pools, and SSE streams parsed from the raw buffer in a protocol's
callback (no task wakes up per event).

Enough for the reference server's JSON API and its SSE streams, whose answers carry a
Content-Length (JSON) or are chunked (streams); not a general client: anything else is
an `HttpError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

# Idle connections are dropped before uvicorn's own 5 s keep-alive ends them, so a request
# rarely goes out on a connection the server is closing.
KEEPALIVE = 2.0
TIMEOUT = 30.0


class HttpError(Exception):
    """An answer this client does not read, or a status the caller did not expect."""


class StaleConnection(HttpError):
    """A kept-alive connection closed by the server before any byte of an answer."""


@dataclass(frozen=True)
class Origin:
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise HttpError(f"not an http://host:port URL: {url}")
        return cls(parts.hostname, parts.port)

    @property
    def host_header(self) -> bytes:
        return f"{self.host}:{self.port}".encode()


def request_head(
    method: str, origin: Origin, target: str, headers: dict[str, str], *, body: bool
) -> bytes:
    """The request line and headers, up to and without the Content-Length value when
    `body` (the caller appends `b"%d\\r\\n\\r\\n" % len(body) + body`), else complete."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host}:{origin.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = "\r\n".join(lines).encode()
    return head + (b"\r\nContent-Length: " if body else b"\r\n\r\n")


def parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    """(status, headers with lower-case names) of a response head ending in CRLF CRLF."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.1 ") or not status_line[9:12].isdigit():
        raise HttpError(f"not an HTTP/1.1 status line: {status_line[:40]!r}")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    return int(status_line[9:12]), headers


@dataclass
class Response:
    status: int
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class Pool:
    """At most `size` keep-alive connections to one origin, each carrying one request at a
    time. A request that finds its reused connection closed by the server before any
    answer (the keep-alive race) is sent again once on a new connection and counted in
    `resent`: safe for the generator's requests, since a send repeats its
    client_message_id (the server answers the stored message, no second copy) and an ack
    may be repeated."""

    def __init__(self, origin: Origin, size: int, *, keepalive: float = KEEPALIVE) -> None:
        self.origin = origin
        self.keepalive = keepalive
        self.opened = 0
        self.resent = 0
        self._gate = asyncio.Semaphore(size)
        self._idle: list[_Connection] = []

    async def request(self, data: bytes) -> Response:
        async with self._gate, asyncio.timeout(TIMEOUT):
            while (conn := self._take()) is not None:
                try:
                    return await self._exchange(conn, data)
                except StaleConnection:
                    self.resent += 1
            return await self._exchange(await self._open(), data)

    def _take(self) -> _Connection | None:
        expired = time.monotonic() - self.keepalive
        while self._idle and self._idle[0].idle_since < expired:
            self._idle.pop(0).close()
        return self._idle.pop() if self._idle else None

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.origin.host, self.origin.port)
        self.opened += 1
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, data: bytes) -> Response:
        try:
            conn.writer.write(data)
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise HttpError("connection closed inside a response head") from exc
                raise StaleConnection("connection closed before an answer") from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnection(f"connection reset before an answer: {exc}") from exc
            status, headers = parse_head(head)
            length = headers.get(b"content-length")
            if length is None:
                raise HttpError(f"HTTP {status} without Content-Length")
            body = await conn.reader.readexactly(int(length))
        except BaseException:
            conn.close()
            raise
        if headers.get(b"connection", b"").lower() == b"close":
            conn.close()
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        return Response(status, body)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()


class ChunkedBody:
    """A chunked transfer-encoded body, decoded as its bytes arrive."""

    def __init__(self) -> None:
        self.ended = False
        self._raw = b""

    def feed(self, data: bytes) -> bytes:
        raw = self._raw + data if self._raw else data
        out = []
        pos = 0
        while not self.ended:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            try:
                size = int(raw[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                raise HttpError(f"bad chunk size line {raw[pos:eol][:20]!r}") from None
            if size == 0:
                self.ended = True
                break
            end = eol + 2 + size
            if len(raw) < end + 2:
                break
            if raw[end : end + 2] != b"\r\n":
                raise HttpError("a chunk not followed by CRLF")
            out.append(raw[eol + 2 : end])
            pos = end + 2
        self._raw = raw[pos:]
        return b"".join(out)


class SseStream(asyncio.Protocol):
    """One SSE stream: sends `request` once connected, checks the answer is 200 and
    chunked, then calls `on_block` with each event block (the bytes between blank lines,
    as the server wrote them) from the transport's callback. `closed` resolves when the
    connection ends, with the error if any."""

    def __init__(self, request: bytes, on_block: Callable[[bytes], None]) -> None:
        self.request = request
        self.on_block = on_block
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._head: bytes | None = b""
        self._body = ChunkedBody()
        self._rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            if self._head is not None:
                self._head += data
                end = self._head.find(b"\r\n\r\n")
                if end < 0:
                    return
                status, headers = parse_head(self._head[: end + 4])
                data = self._head[end + 4 :]
                self._head = None
                if status != 200:
                    raise HttpError(f"stream answered {status}")
                if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
                    raise HttpError("stream answered without chunked framing")
            blocks = (self._rest + self._body.feed(data)).split(b"\n\n")
            self._rest = blocks.pop()
            for block in blocks:
                self.on_block(block)
            if self._body.ended:
                self._finish(None)
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits `closed`
            self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if not self.closed.done():
            if exc is None:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


async def open_sse(origin: Origin, request: bytes, on_block: Callable[[bytes], None]) -> SseStream:
    """A connected `SseStream` (its request sent)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: SseStream(request, on_block), origin.host, origin.port
    )
    return protocol
