"""Direct messages: conversations, sending, the SSE stream, polling, acks, user blocks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import format_sse_event

from e2ee_ops.reference.auth import Caller, caller
from e2ee_ops.reference.crypto import b64, decode_b64
from e2ee_ops.reference.errors import ApiError
from e2ee_ops.reference.schemas import (
    INT8_MAX,
    AckRequest,
    AfterQuery,
    IdPath,
    LimitQuery,
    NewConversation,
    NewMessage,
    UserBlock,
)
from e2ee_ops.reference.state import (
    AppState,
    app_state,
    enforce_limit,
    refuse_blocked_user,
    require_dm_enabled,
)
from e2ee_ops.reference.store import (
    Conflict,
    EnvelopeDevice,
    NotFound,
    Row,
    as_datetime_str,
    envelope_problem,
)

router = APIRouter(prefix="/dm", dependencies=[Depends(require_dm_enabled)])
log = logging.getLogger("e2ee_ops.reference.dm")

# A stream whose client never acknowledges is closed past this many unacked events;
# the client reconnects with Last-Event-ID.
STREAM_MAX_UNACKED = 10_000
STREAM_PRUNE_AT = 500


def _conversation_view(row: Row) -> dict[str, Any]:
    return {
        "conversation_id": row["conversation_id"],
        "members": list(row["members"]),
        "created_at": as_datetime_str(row["created_at"]),
    }


@router.get("/conversations")
async def list_conversations(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    rows = await app_state(request).store.list_conversations(who.user_id)
    return {"conversations": [_conversation_view(r) for r in rows]}


@router.post("/conversations", status_code=201)
async def open_conversation(
    body: NewConversation, request: Request, response: Response, who: Caller = Depends(caller)
) -> dict[str, Any]:
    refuse_blocked_user(who)
    if body.peer_user_id == who.user_id:
        raise ApiError(422, "a conversation needs another user")
    row, created = await app_state(request).store.open_conversation(who.user_id, body.peer_user_id)
    if not created:
        response.status_code = 200
    return _conversation_view(row)


@router.post("/conversations/{conversation_id}/messages", status_code=201)
async def send_message(
    conversation_id: IdPath,
    body: NewMessage,
    request: Request,
    response: Response,
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    answer = await store_and_relay(app_state(request), who, conversation_id, body)
    if answer["duplicate"]:
        response.status_code = 200
    return answer


async def store_and_relay(
    state: AppState, who: Caller, conversation_id: int, body: NewMessage
) -> dict[str, Any]:
    """A send's work once its request is valid (this route's, and `hot_routes`'s): the
    answer, with `duplicate` true for a retry (200) and false for a new message (201)."""
    refuse_blocked_user(who)
    try:
        await enforce_limit(state, "messages", who.user_id, state.settings.rate_limit_messages)
    except ApiError:
        await state.store.record_rate_limited(who.user_id)
        raise
    sender_device = body.sender_device_id
    context = await state.store.send_context(
        conversation_id, who.user_id, sender_device, [e.device_id for e in body.envelopes]
    )
    members = [int(m) for m in context["members"]]
    if who.user_id not in members:
        raise NotFound(f"no conversation {conversation_id}")
    recipients = [m for m in members if m != who.user_id]
    if context["blocked"]:
        raise ApiError(403, "the recipient has blocked this sender", "BLOCKED_BY_RECIPIENT")
    if context["device_status"] is None:
        raise NotFound(f"no device {sender_device}")
    if context["device_status"] != "active":
        raise Conflict("DEVICE_REVOKED", "the sending device has been revoked")
    envelopes = [
        (
            e.device_id,
            e.bundle_version,
            decode_b64(e.ciphertext, f"envelopes[{i}].ciphertext"),
        )
        for i, e in enumerate(body.envelopes)
    ]
    found: dict[uuid.UUID, EnvelopeDevice] = context["devices"]
    message, duplicate, devices = await state.store.store_message(
        conversation_id,
        who.user_id,
        sender_device,
        body.client_message_id,
        envelopes,
        {d: found[d].user_id for d, _, _ in envelopes if d in found},
        envelope_problem(found, envelopes, recipients),
    )
    if not duplicate:
        state.telemetry.messages_sent.inc()
    # Stored first; the publish is only a wake-up, so its failure loses nothing.
    relayed = await state.relay.publish(devices)
    return {
        "message_id": message["id"],
        "created_at": as_datetime_str(message["created_at"]),
        "relayed": relayed,
        "duplicate": duplicate,
    }


def _event_payload(row: Row) -> dict[str, Any]:
    return {
        "message_id": row["message_id"],
        "conversation_id": row["conversation_id"],
        "sender_user_id": row["sender_user_id"],
        "sender_device_id": str(row["sender_device_id"]),
        "created_at": as_datetime_str(row["created_at"]),
        "ciphertext": b64(bytes(row["ciphertext"])),
    }


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    return format_sse_event(
        data_str=json.dumps(data, separators=(",", ":")),
        event=event,
        id=None if event_id is None else str(event_id),
    )


def _heartbeat(state: AppState) -> bytes:
    return _sse(
        "heartbeat",
        {
            "relay_lag": state.relay.relay_lag,
            "redis_status": state.relay.redis_status,
            "ts": datetime.now(UTC).isoformat(),
        },
    )


async def _own_active_device(state: AppState, device_id: uuid.UUID, who: Caller) -> None:
    device = await state.store.owned_device(device_id, who.user_id)
    if device["status"] != "active":
        raise Conflict("DEVICE_REVOKED", "the device has been revoked")


@router.get("/devices/{device_id}/stream")
async def stream(
    device_id: uuid.UUID,
    request: Request,
    who: Caller = Depends(caller),
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    state = app_state(request)
    refuse_blocked_user(who)
    await _own_active_device(state, device_id, who)
    floor = 0
    if last_event_id:
        try:
            floor = max(int(last_event_id), 0)
        except ValueError:
            floor = -1
        if not 0 <= floor <= INT8_MAX:
            raise ApiError(422, "Last-Event-ID must be a message id")
    await state.store.touch_device(device_id)
    return StreamingResponse(
        _stream_events(state, device_id, floor, who.token_hash),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream_events(
    state: AppState, device_id: uuid.UUID, floor: int, token_hash: str
) -> AsyncIterator[bytes]:
    telemetry = state.telemetry
    hub = state.hub
    sub = hub.register(device_id, token_hash, floor)
    telemetry.sse_connects.inc()
    telemetry.sse_connections.inc()
    ended_by_server = False
    reason = "client disconnected"
    try:
        yield _heartbeat(state)
        while True:
            if state.closing.is_set():
                ended_by_server, reason = True, "server shutting down"
                yield _sse("closing", {"reason": reason})
                return
            # A token revoked, a device removed or a user blocked since the stream
            # opened ends it within one heartbeat interval (checked for all streams at
            # once by the relay's access loop).
            if sub.revoked:
                ended_by_server, reason = True, "access revoked"
                yield _sse("closing", {"reason": reason})
                return
            if sub.failure is not None:
                raise sub.failure
            if sub.wake.is_set():
                sub.wake.clear()
                # Handed over to this stream (`StreamHub`: one statement for every stream
                # a wake-up concerns), marked before they are written: a cumulative ack
                # covers what was marked no later than the id it names.
                last = None
                while sub.ready:
                    row = sub.ready.popleft()
                    last = int(row["message_id"])
                    telemetry.observe_delivery(
                        (datetime.now(UTC) - row["created_at"]).total_seconds()
                    )
                    yield _sse("message", _event_payload(row), last)
                if sub.full and last is not None:
                    # A whole batch: the rest of a backlog continues after its last id
                    # (a cursor), once these are written.
                    sub.full = False
                    hub.request(sub, last)
                if len(sub.emitted) > STREAM_PRUNE_AT:
                    sub.emitted -= await state.store.acknowledged_among(
                        device_id, sorted(sub.emitted)
                    )
                if len(sub.emitted) > STREAM_MAX_UNACKED:
                    ended_by_server, reason = True, "too many unacknowledged events"
                    yield _sse("closing", {"reason": reason})
                    return
            # Woken by a hand-over, by the access check or by `AppState.close`; a timer,
            # not a task, for the heartbeat. A client that goes away cancels this
            # generator (Starlette listens for the disconnect), so nothing polls for it.
            try:
                async with asyncio.timeout(state.settings.heartbeat_seconds):
                    await sub.wake.wait()
            except TimeoutError:
                yield _heartbeat(state)
    except asyncio.CancelledError:
        raise
    except Exception:
        telemetry.sse_failures.inc()
        log.exception("SSE stream of device %s failed", device_id)
        ended_by_server, reason = True, "server error"
    finally:
        log.debug("SSE stream of device %s closed: %s", device_id, reason)
        hub.unregister(sub)
        telemetry.sse_connections.dec()
        if not ended_by_server:
            telemetry.sse_disconnects.inc()
        with contextlib.suppress(Exception):
            await state.store.touch_device(device_id)


@router.get("/devices/{device_id}/messages")
async def poll_messages(
    device_id: uuid.UUID,
    request: Request,
    after: AfterQuery = 0,
    limit: LimitQuery = 100,
    who: Caller = Depends(caller),
) -> dict[str, Any]:
    state = app_state(request)
    await _own_active_device(state, device_id, who)
    await state.store.touch_device(device_id)
    rows = await state.store.hand_over_pending(device_id, after, limit)
    return {"messages": [_event_payload(r) for r in rows], "relay_lag": state.relay.relay_lag}


@router.post("/devices/{device_id}/ack")
async def acknowledge(
    device_id: uuid.UUID, body: AckRequest, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await acknowledge_delivered(app_state(request), who, device_id, body)


async def acknowledge_delivered(
    state: AppState, who: Caller, device_id: uuid.UUID, body: AckRequest
) -> dict[str, Any]:
    """An ack's work once its request is valid (this route's, and `hot_routes`'s)."""
    if body.up_to is not None:
        count = await state.store.acknowledge_up_to(device_id, who.user_id, body.up_to)
    else:
        assert body.message_ids is not None  # one of the two, by AckRequest
        count = await state.store.acknowledge(device_id, who.user_id, body.message_ids)
    return {"acknowledged": count}


@router.post("/blocks", status_code=201)
async def block(body: UserBlock, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    if body.user_id == who.user_id:
        raise ApiError(422, "a user cannot block themselves")
    await app_state(request).store.set_user_block(who.user_id, body.user_id, True)
    return {"blocked_user_id": body.user_id, "blocked": True}


@router.delete("/blocks/{user_id}")
async def unblock(
    user_id: IdPath, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await app_state(request).store.set_user_block(who.user_id, user_id, False)
    return {"blocked_user_id": user_id, "blocked": False}
