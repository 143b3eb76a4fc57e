"""A local HTTP server standing in for Slack, PagerDuty, a webhook or a push gateway:
records every JSON POST (path, body, headers) and answers 2xx."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HttpReceiver:
    """Use as a context manager, or start() and stop(). PagerDuty's paths (`/pd...`) are
    answered 202 as PagerDuty does, every other path 200."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay  # seconds each answer waits (a slow endpoint)
        self.posts: list[tuple[str, Any, dict[str, str]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.posts.append((self.path, body, dict(self.headers)))
                answer = b'{"status": "success"}'
                self.send_response(202 if self.path.startswith("/pd") else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HttpReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def on(self, path: str) -> list[Any]:
        """The bodies POSTed to exactly `path`."""
        with self.lock:
            return [body for p, body, _ in self.posts if p == path]

    def at(self, prefix: str) -> list[Any]:
        """The bodies POSTed to any path starting with `prefix`."""
        with self.lock:
            return [body for p, body, _ in self.posts if p.startswith(prefix)]
