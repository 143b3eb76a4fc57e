"""What every route needs, built once per app and reached through the request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from e2ee_ops.reference.auth import Caller
from e2ee_ops.reference.errors import DM_DISABLED_DETAIL, ApiError
from e2ee_ops.reference.ratelimit import RateLimiter
from e2ee_ops.reference.relay import Relay, StreamHub
from e2ee_ops.reference.settings import ServerSettings
from e2ee_ops.reference.store import Store
from e2ee_ops.reference.telemetry import Telemetry
from e2ee_ops.reference.tokens import TokenCache


@dataclass
class AppState:
    settings: ServerSettings
    store: Store
    hub: StreamHub
    relay: Relay
    telemetry: Telemetry
    limiter: RateLimiter
    tokens: TokenCache
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot_cache: tuple[float, dict[str, Any]] | None = None

    def close(self) -> None:
        """Shutting down: every open stream wakes, sees `closing` and says goodbye."""
        self.closing.set()
        self.hub.close()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.e2ee
    return state


def refuse_blocked_user(who: Caller) -> None:
    """An account an admin blocked may neither message nor claim anyone's prekeys."""
    if who.blocked:
        raise ApiError(403, "this account is blocked from messaging", "USER_BLOCKED")


async def enforce_limit(state: AppState, name: str, key: object, limit: int) -> None:
    """429 with `retry_in_seconds`, Retry-After and the limit's `name` when `key` is over
    the limit `name` (one sliding window of E2EE_RATE_LIMIT_WINDOW_SECONDS)."""
    retry_in = await state.limiter.check(
        name, key, limit, state.settings.rate_limit_window_seconds, redis_ok=state.relay.redis_ok
    )
    if retry_in is not None:
        raise ApiError(
            429,
            "rate limit exceeded",
            "RATE_LIMITED",
            extra={"retry_in_seconds": retry_in, "limit": name},
            headers={"Retry-After": str(retry_in)},
        )


async def require_dm_enabled(request: Request) -> None:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off
    # on every /dm request (about a tenth of the API's CPU under load, measured).
    if not app_state(request).settings.e2ee_dm_enabled:
        raise HTTPException(403, DM_DISABLED_DETAIL)
