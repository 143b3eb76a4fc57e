"""Hostile servers on real sockets: they hang, drip, lie and never stop talking.

A `FakeServer` listens on 127.0.0.1 and answers each connection by the first route
whose path prefix matches the request line; every behaviour is a function of the
accepted socket and the stop event, so `close()` ends them all at once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

Behaviour = Callable[[socket.socket, threading.Event], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(5)
    try:
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def _head(status: str, content_type: str, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}\r\n").encode()


def hang(conn: socket.socket, stop: threading.Event) -> None:
    """Accept the request and never answer."""
    stop.wait()


def drip_sse(conn: socket.socket, stop: threading.Event) -> None:
    """An event stream that sends a byte now and then and never completes an event;
    it ends when the client hangs up (the next send fails)."""
    conn.sendall(_head("200 OK", "text/event-stream", "Cache-Control: no-cache\r\n"))
    line = b'event: heartbeat\ndata: {"relay_lag": fa'
    i = 0
    while not stop.wait(0.1):
        try:
            conn.sendall(line[i % len(line) : i % len(line) + 1])
        except OSError:
            return
        i += 1
        if i % len(line) == 0:
            line = b"x" * 40  # keep going on the same unfinished field


def _forever(conn: socket.socket, stop: threading.Event, start: bytes, block: bytes) -> None:
    """Send `start`, then `block` again and again until the client hangs up."""
    conn.sendall(start)
    while not stop.is_set():
        try:
            conn.sendall(block)
        except OSError:
            return


def endless_sse(conn: socket.socket, stop: threading.Event) -> None:
    """An event stream whose first line never ends."""
    _forever(conn, stop, _head("200 OK", "text/event-stream") + b"data: ", b"x" * 65536)


def html(conn: socket.socket, stop: threading.Event) -> None:
    body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
    conn.sendall(_head("200 OK", "text/html", f"Content-Length: {len(body)}\r\n") + body)


def not_http(conn: socket.socket, stop: threading.Event) -> None:
    """Another protocol's greeting and garbage, then a hang-up."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x1b[2J\r\n\r\n")
    conn.shutdown(socket.SHUT_RDWR)


def json_body(body: Any, status: str = "200 OK") -> Behaviour:
    raw = json.dumps(body).encode()

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(_head(status, "application/json", f"Content-Length: {len(raw)}\r\n") + raw)

    return answer


def after(action: Callable[[], None], then: Behaviour) -> Behaviour:
    """Run `action` once the request has arrived, then answer as `then` does."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        action()
        then(conn, stop)

    return answer


def endless(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 answer whose body never ends (no length, no chunking: read until close)."""
    _forever(conn, stop, _head("200 OK", "text/plain", "Connection: close\r\n"), b"# x\n" * 16384)


class FakeServer:
    def __init__(self, routes: Mapping[str, Behaviour], default: Behaviour = hang) -> None:
        self.routes = dict(routes)
        self.default = default
        self.stop = threading.Event()
        self.requests: list[str] = []  # request lines, in arrival order
        self.raw_requests: list[bytes] = []  # request lines and headers
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open_connections = 0  # accepted and not yet given up by either side
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
        try:
            self._answer(conn)
        finally:
            with self._lock:
                self.open_connections -= 1

    def _answer(self, conn: socket.socket) -> None:
        request = _read_request(conn)
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        self.requests.append(line)
        self.raw_requests.append(request)
        path = line.split(" ")[1] if line.count(" ") >= 2 else ""
        behaviour = next(
            (b for prefix, b in self.routes.items() if path.startswith(prefix)), self.default
        )
        try:
            behaviour(conn, self.stop)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self._accept.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quiet_sse(conn: socket.socket, stop: threading.Event) -> None:
    """An event stream that sends one whole heartbeat, then nothing until the end."""
    conn.sendall(_head("200 OK", "text/event-stream", "Cache-Control: no-cache\r\n"))
    conn.sendall(b'event: heartbeat\ndata: {"relay_lag": false}\n\n')
    stop.wait()
