"""Reference-server settings, read from the environment when the app is built."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ServerSettings:
    database_url: str
    redis_url: str
    e2ee_dm_enabled: bool = True
    signed_prekey_max_age_days: float = 90.0
    rate_limit_messages: int = 60
    rate_limit_window_seconds: float = 60.0
    # Prekey claims: per requesting user and per claimed device, in the same window.
    claim_limit_per_requester: int = 20
    claim_limit_per_device: int = 10
    max_body_bytes: int = 8 * 1024 * 1024
    heartbeat_seconds: float = 15.0
    relay_lag_threshold_seconds: float = 2.0
    redis_retry_seconds: float = 0.5
    otpk_critical: int = 5
    otpk_warning: int = 10
    identity_changes_per_day: int = 2
    metrics_cache_seconds: float = 2.0
    # How long a resolved token is kept (0: every request queries it), see tokens.py.
    token_cache_seconds: float = 5.0
    # last_seen_at written at most this often per device for sends and acks;
    # connecting, polling and uploading prekeys always write it.
    last_seen_interval_seconds: float = 5.0
    # PostgreSQL connections of this process at most.
    db_pool_size: int = 10
    # Sends and acks served without FastAPI's routing when well-formed (hot_routes.py).
    hot_routes: bool = True
    # After start-up, what it built is moved out of the cyclic collector's reach.
    gc_freeze: bool = True
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # Through Sentinel instead of redis_url: sentinels as host:port, and the service name.
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_service: str = "mymaster"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServerSettings:
        e = dict(os.environ if env is None else env)
        sentinels = tuple(
            h.strip() for h in e.get("E2EE_REDIS_SENTINELS", "").split(",") if h.strip()
        )
        try:
            database_url = e["E2EE_DATABASE_URL"]
            redis_url = e.get("E2EE_REDIS_URL", "") if sentinels else e["E2EE_REDIS_URL"]
        except KeyError as missing:
            raise SystemExit(f"reference server: {missing.args[0]} is not set") from None
        return cls(
            database_url=database_url,
            redis_url=redis_url,
            e2ee_dm_enabled=_flag(e.get("E2EE_DM_ENABLED"), True),
            signed_prekey_max_age_days=float(e.get("E2EE_SIGNED_PREKEY_MAX_AGE_DAYS", "90")),
            rate_limit_messages=int(e.get("E2EE_RATE_LIMIT_MESSAGES", "60")),
            rate_limit_window_seconds=float(e.get("E2EE_RATE_LIMIT_WINDOW_SECONDS", "60")),
            claim_limit_per_requester=int(e.get("E2EE_CLAIM_LIMIT_PER_REQUESTER", "20")),
            claim_limit_per_device=int(e.get("E2EE_CLAIM_LIMIT_PER_DEVICE", "10")),
            max_body_bytes=int(e.get("E2EE_MAX_BODY_BYTES", str(8 * 1024 * 1024))),
            heartbeat_seconds=float(e.get("E2EE_HEARTBEAT_SECONDS", "15")),
            relay_lag_threshold_seconds=float(e.get("E2EE_RELAY_LAG_SECONDS", "2")),
            redis_retry_seconds=float(e.get("E2EE_REDIS_RETRY_SECONDS", "0.5")),
            metrics_cache_seconds=float(e.get("E2EE_METRICS_CACHE_SECONDS", "2")),
            token_cache_seconds=float(e.get("E2EE_TOKEN_CACHE_SECONDS", "5")),
            last_seen_interval_seconds=float(e.get("E2EE_LAST_SEEN_INTERVAL_SECONDS", "5")),
            db_pool_size=int(e.get("E2EE_DB_POOL_SIZE", "10")),
            hot_routes=_flag(e.get("E2EE_HOT_ROUTES"), True),
            gc_freeze=_flag(e.get("E2EE_GC_FREEZE"), True),
            instance_id=e.get("E2EE_INSTANCE_ID") or uuid.uuid4().hex[:12],
            redis_sentinels=sentinels,
            redis_sentinel_service=e.get("E2EE_REDIS_SENTINEL_SERVICE") or "mymaster",
        )
