"""The reference server's FastAPI application."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from e2ee_ops import __version__
from e2ee_ops.reference import errors, routes_admin, routes_dm, routes_e2ee, routes_ops
from e2ee_ops.reference.hot_routes import HotRoutes
from e2ee_ops.reference.middleware import RequestGuard
from e2ee_ops.reference.ratelimit import RateLimiter
from e2ee_ops.reference.relay import Relay, StreamHub
from e2ee_ops.reference.settings import ServerSettings
from e2ee_ops.reference.state import AppState
from e2ee_ops.reference.store import Store
from e2ee_ops.reference.telemetry import Telemetry
from e2ee_ops.reference.tokens import TokenCache

log = logging.getLogger("e2ee_ops.reference")


def freeze_start_up() -> None:
    """Move every object start-up built (modules, the app, its routes and pools) to the
    collector's permanent generation: they live as long as the process, and a full
    collection under load then walks only what requests and streams create."""
    gc.collect()
    gc.freeze()


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings.from_env()
    telemetry = Telemetry()
    store = Store(
        settings.database_url,
        max_size=settings.db_pool_size,
        last_seen_interval=settings.last_seen_interval_seconds,
    )
    hub = StreamHub(store)
    tokens = TokenCache(settings.token_cache_seconds)
    relay = Relay(settings, hub, telemetry, store, tokens)
    state = AppState(
        settings=settings,
        store=store,
        hub=hub,
        relay=relay,
        telemetry=telemetry,
        limiter=RateLimiter(relay.client),
        tokens=tokens,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.store.open()
        await state.relay.start()
        if settings.gc_freeze:
            freeze_start_up()
        log.info(
            "reference server %s up (instance %s, E2EE DM %s)",
            __version__,
            settings.instance_id,
            "enabled" if settings.e2ee_dm_enabled else "disabled",
        )
        try:
            yield
        finally:
            state.close()
            await state.relay.stop()
            await state.store.close()

    app = FastAPI(title="E2EE DM reference server", version=__version__, lifespan=lifespan)
    app.state.e2ee = state
    errors.install(app)
    if settings.hot_routes:
        # Inside RequestGuard: its body limit and error counts apply to these too.
        app.add_middleware(HotRoutes, state=state)
    app.add_middleware(RequestGuard, telemetry=telemetry, max_bytes=settings.max_body_bytes)
    for module in (routes_ops, routes_admin, routes_e2ee, routes_dm):
        app.include_router(module.router)
    return app
