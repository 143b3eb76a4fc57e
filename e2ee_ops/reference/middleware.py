"""Counts every error response by status and code (pure ASGI, so SSE streams pass untouched)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e2ee_ops.reference.telemetry import Telemetry


class ErrorCounter:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                code = scope.get("state", {}).get("error_code")
                self.telemetry.error(int(message["status"]), code)
            await send(message)

        await self.app(scope, receive, counting_send)
