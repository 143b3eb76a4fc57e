"""Health and metrics: /health, /metrics (Prometheus), admin /dm/metrics and /live-chat/metrics."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from e2ee_ops import __version__
from e2ee_ops import metrics as m
from e2ee_ops.reference.auth import Caller, admin
from e2ee_ops.reference.state import AppState, app_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = app_state(request)
    database_ok = await state.store.ping()
    redis_ok = await state.relay.ping()
    body = {
        "status": "ok" if database_ok and redis_ok else "degraded",
        "database": "ok" if database_ok else "unavailable",
        "redis": "ok" if redis_ok else "unavailable",
        "e2ee_dm_enabled": state.settings.e2ee_dm_enabled,
        "version": __version__,
        "instance_id": state.settings.instance_id,
    }
    return JSONResponse(body, status_code=200 if database_ok else 503)


async def _snapshot(state: AppState) -> dict[str, Any]:
    """Database aggregates, cached briefly so that scrapes from many sources stay cheap."""
    cached = state.snapshot_cache
    now = time.monotonic()
    if cached is not None and now - cached[0] < state.settings.metrics_cache_seconds:
        return cached[1]
    s = state.settings
    snap = await state.store.metrics_snapshot(
        otpk_critical=s.otpk_critical,
        otpk_warning=s.otpk_warning,
        max_age_days=s.signed_prekey_max_age_days,
        identity_per_day=s.identity_changes_per_day,
    )
    state.snapshot_cache = (now, snap)
    return snap


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _window(lost_at: datetime | None, regained_at: datetime | None) -> dict[str, Any] | None:
    if lost_at is None or regained_at is None:
        return None
    return {
        "lost_at": _iso(lost_at),
        "regained_at": _iso(regained_at),
        "duration_seconds": round((regained_at - lost_at).total_seconds(), 3),
    }


def _live_chat(state: AppState) -> dict[str, Any]:
    relay = state.relay
    last = relay.last_outage
    return {
        "instance_id": state.settings.instance_id,
        "redis_status": relay.redis_status,
        "relay_lag": relay.relay_lag,
        "pubsub_lag_seconds": relay.pubsub_lag_seconds,
        # This instance's own record: when it lost Redis (null while it reaches it),
        # and its last completed outage.
        "redis_unavailable_since": _iso(relay.unavailable_since),
        "last_redis_outage": _window(*last) if last else None,
        "rate_limit_mode": state.limiter.mode,
        "sse": state.telemetry.sse_summary(),
    }


async def _outages_by_instance(state: AppState) -> list[dict[str, Any]]:
    """Every instance's record from PostgreSQL, so one instance reports the fleet's."""
    try:
        rows = await state.store.relay_outages()
    except Exception:  # noqa: BLE001 - the database may be what is failing
        return []
    return [
        {
            "instance_id": r["instance_id"],
            "redis_unavailable_since": _iso(r["unavailable_since"]),
            "last_redis_outage": _window(r["last_lost_at"], r["last_regained_at"]),
        }
        for r in rows
    ]


@router.get("/live-chat/metrics")
async def live_chat_metrics(request: Request, _: Caller = Depends(admin)) -> dict[str, Any]:
    return _live_chat(app_state(request))


@router.get("/dm/metrics")
async def dm_metrics(request: Request, _: Caller = Depends(admin)) -> dict[str, Any]:
    state = app_state(request)
    s = state.settings
    snap = await _snapshot(state)
    pools, messages, identity = snap["pools"], snap["messages"], snap["identity"]
    return {
        **_live_chat(state),
        "redis_outages_by_instance": await _outages_by_instance(state),
        "e2ee_dm_enabled": s.e2ee_dm_enabled,
        "otpk_pools": {
            "devices_active": pools["devices_active"],
            "below_critical": pools["below_critical"],
            "below_warning": pools["below_warning"],
            "exhausted": pools["exhausted"],
            "average_remaining": round(float(pools["average_remaining"]), 2),
            "min_remaining": pools["min_remaining"],
            "claims_last_hour": snap["claims_last_hour"],
            "claim_rate_per_minute": round(snap["claims_last_hour"] / 60.0, 3),
            "critical_threshold": s.otpk_critical,
            "warning_threshold": s.otpk_warning,
        },
        "message_stats": {
            "messages_last_minute": messages["messages_last_minute"],
            "messages_last_hour": messages["messages_last_hour"],
            "messages_per_minute": round(messages["messages_last_hour"] / 60.0, 3),
            "undelivered_last_5_minutes": snap["undelivered_last_5_minutes"],
        },
        "delivery_latency_ms": state.telemetry.latency_summary(),
        "errors": state.telemetry.errors_summary(),
        "identity_changes": {
            "last_24h": identity["last_24h"],
            "max_per_user_24h": identity["max_per_user"],
            "users_over_threshold": identity["users_over"],
            "threshold_per_day": s.identity_changes_per_day,
        },
        "signed_prekey_age_days": {
            "max": round(float(pools["spk_max_days"]), 3),
            "average": round(float(pools["spk_avg_days"]), 3),
            "devices_over_max": pools["spk_over_max"],
            "max_age_days": s.signed_prekey_max_age_days,
        },
    }


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    state = app_state(request)
    snap = await _snapshot(state)
    pools, identity = snap["pools"], snap["identity"]
    state.telemetry.shared.update(
        {
            m.DM_ENABLED: ("1 when E2EE DM is enabled", float(state.settings.e2ee_dm_enabled)),
            m.OTPK_DEVICES_ACTIVE: ("Active devices", float(pools["devices_active"])),
            m.OTPK_DEVICES_BELOW_CRITICAL: (
                "Active devices under the critical one-time prekey threshold",
                float(pools["below_critical"]),
            ),
            m.OTPK_DEVICES_BELOW_WARNING: (
                "Active devices under the warning one-time prekey threshold",
                float(pools["below_warning"]),
            ),
            m.OTPK_DEVICES_EXHAUSTED: (
                "Active devices with no one-time prekey left",
                float(pools["exhausted"]),
            ),
            m.OTPK_REMAINING_MIN: (
                "Smallest one-time prekey pool of an active device",
                float(pools["min_remaining"] or 0),
            ),
            m.OTPK_REMAINING_AVG: (
                "Average one-time prekey pool",
                float(pools["average_remaining"]),
            ),
            m.PREKEY_CLAIMS_LAST_HOUR: (
                "One-time prekeys claimed in the last hour",
                float(snap["claims_last_hour"]),
            ),
            m.SIGNED_PREKEY_AGE_MAX_SECONDS: (
                "Age of the oldest signed prekey of an active device",
                float(pools["spk_max_days"]) * 86400.0,
            ),
            m.SIGNED_PREKEY_DEVICES_OVER_MAX_AGE: (
                "Active devices whose signed prekey is older than the maximum age",
                float(pools["spk_over_max"]),
            ),
            m.IDENTITY_CHANGES_MAX_PER_USER_24H: (
                "Most identity key changes by one user in 24 hours",
                float(identity["max_per_user"]),
            ),
            m.IDENTITY_CHANGE_USERS_OVER_THRESHOLD: (
                "Users over the identity-change threshold in 24 hours",
                float(identity["users_over"]),
            ),
            m.UNDELIVERED_MESSAGES_5M: (
                "Messages of the last 5 minutes not yet delivered to every device",
                float(snap["undelivered_last_5_minutes"]),
            ),
        }
    )
    state.telemetry.redis_unavailable.set(state.relay.unavailable_seconds())
    return Response(generate_latest(state.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
