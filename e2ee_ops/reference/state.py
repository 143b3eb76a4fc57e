"""What every route needs, built once per app and reached through the request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from e2ee_ops.reference.errors import DM_DISABLED_DETAIL
from e2ee_ops.reference.ratelimit import SlidingWindowLimiter
from e2ee_ops.reference.relay import Relay, StreamHub
from e2ee_ops.reference.settings import ServerSettings
from e2ee_ops.reference.store import Store
from e2ee_ops.reference.telemetry import Telemetry


@dataclass
class AppState:
    settings: ServerSettings
    store: Store
    hub: StreamHub
    relay: Relay
    telemetry: Telemetry
    limiter: SlidingWindowLimiter
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot_cache: tuple[float, dict[str, Any]] | None = None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.e2ee
    return state


def require_dm_enabled(request: Request) -> None:
    if not app_state(request).settings.e2ee_dm_enabled:
        raise HTTPException(403, DM_DISABLED_DETAIL)
