"""Pure ASGI middleware (so SSE streams pass untouched): error counting, body size limit."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e2ee_ops.reference.telemetry import Telemetry


class BodyTooLarge(HTTPException):
    """Raised while reading the body; FastAPI passes an HTTPException through as is."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large(max_bytes))


def _too_large(max_bytes: int) -> str:
    return f"request body over the limit of {max_bytes} bytes"


class RequestGuard:
    """Every HTTP request: 413 for a body over `max_bytes` (by its Content-Length or as it
    streams in), and every error response counted by status and code.

    Both in one wrapper of `send`: an SSE stream passes each of its events through it.
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry, max_bytes: int) -> None:
        self.app = app
        self.telemetry = telemetry
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    code = scope.get("state", {}).get("error_code")
                    self.telemetry.error(int(message["status"]), code)
            await send(message)

        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(guarded_send)
                return
        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(guarded_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": _too_large(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
