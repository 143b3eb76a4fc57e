"""The two requests every message makes, its send and its ack, served without FastAPI's
routing and dependency solving (about a third of the API's CPU per message, profiled).

Only a plainly well-formed request is served here: DM enabled, the path in its canonical
form (a decimal id, a lowercase hyphenated UUID), one `Bearer` token that resolves,
`Content-Type: application/json`, and a JSON body the route's own model accepts. Anything
else (and a body that could not be read) goes to the application untouched, its body
replayed, so every refusal is FastAPI's own. Once served here, the work and the errors
are the routes' (`routes_dm.store_and_relay`, `routes_dm.acknowledge_delivered`, the
exception handlers of `errors`), and the answer is the JSON FastAPI would write.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from e2ee_ops.reference.auth import Caller, resolve_caller
from e2ee_ops.reference.errors import error_response
from e2ee_ops.reference.routes_dm import acknowledge_delivered, store_and_relay
from e2ee_ops.reference.schemas import INT8_MAX, AckRequest, NewMessage
from e2ee_ops.reference.state import AppState

_SEND = re.compile(r"/dm/conversations/(0|[1-9][0-9]{0,18})/messages")
_ACK = re.compile(r"/dm/devices/([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})/ack")
# A token as `Authorization: Bearer <token>` carries it: printable ASCII, no space.
_TOKEN = re.compile(rb"Bearer ([\x21-\x7e]+)")

Work = Callable[[AppState, Caller, Any, Any], Awaitable[dict[str, Any]]]


class HotRoutes:
    """ASGI middleware in front of the routes: sends and acks, the rest passed on."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("root_path")
            or not self.state.settings.e2ee_dm_enabled
        ):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route: tuple[Work, type[BaseModel], Any] | None = None
        if match := _SEND.fullmatch(path):
            conversation_id = int(match[1])
            if conversation_id <= INT8_MAX:
                route = (store_and_relay, NewMessage, conversation_id)
        elif match := _ACK.fullmatch(path):
            route = (acknowledge_delivered, AckRequest, uuid.UUID(match[1]))
        token = _token(scope) if route is not None else None
        if route is None or token is None:
            await self.app(scope, receive, send)
            return
        work, model, path_value = route
        read: list[Message] = []
        try:
            body = await _read_body(receive, read)
        except Exception as exc:  # noqa: BLE001 - the application meets it as it would
            await self.app(scope, _replay(read, receive, exc), send)
            return
        valid = None if body is None else _valid(model, body)
        who = None
        if valid is not None:
            who = await resolve_caller(self.state.tokens, self.state.store, token)
        if valid is None or who is None:
            await self.app(scope, _replay(read, receive), send)
            return
        try:
            answer = await work(self.state, who, path_value, valid)
        except Exception as exc:
            refused = await error_response(Request(scope, receive), exc)
            if refused is None:
                raise
            await refused(scope, receive, send)
            return
        status = 201 if work is store_and_relay and not answer["duplicate"] else 200
        content = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
        await Response(content, status_code=status, media_type="application/json")(
            scope, receive, send
        )


def _token(scope: Scope) -> str | None:
    """The bearer token when the request has a plain one, and a JSON content type."""
    token = None
    content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and token is None:
            match = _TOKEN.fullmatch(value)
            if match is None:
                return None
            token = match[1].decode("ascii")
        elif name == b"content-type" and content_type is None:
            content_type = value
    return token if content_type == b"application/json" else None


async def _read_body(receive: Receive, read: list[Message]) -> bytes | None:
    """The whole body (None if the client went away first); every message received is
    kept in `read`, to be replayed."""
    chunks = []
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _valid(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """The body as `model`, as FastAPI would validate it; None for anything it would not
    accept (or would read differently)."""
    if not body:
        return None
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError too
        return None


def _replay(read: list[Message], receive: Receive, error: Exception | None = None) -> Receive:
    """`receive` as it was before this middleware read from it."""
    pending = list(read)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replayed
