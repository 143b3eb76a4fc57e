"""Sliding-window rate limits shared by every instance through Redis.

Each limited key is a Redis sorted set of hit timestamps (Redis's own clock, so the
instances' clocks do not matter), trimmed and counted in one Lua script. While Redis
does not answer, each process falls back to its own window: with N instances a
sender then gets up to N times the limit, and `/dm/metrics` says so
(`rate_limit_mode: per_process`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict, deque
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("e2ee_ops.reference.ratelimit")
KEY_PREFIX = "e2ee:ratelimit:"
REDIS_TIMEOUT_SECONDS = 0.5
RateLimitMode = Literal["shared", "per_process"]

# Returns -1 when the hit is allowed (and recorded), else milliseconds until it would be.
_SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class SlidingWindowLimiter:
    """One process's sliding windows: the fallback while Redis is down."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key: str, limit: int, window: float, now: float | None = None) -> int | None:
        """Record a hit; None when allowed, else whole seconds until the next is allowed."""
        now = time.monotonic() if now is None else now
        hits = self._hits[key]
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return max(1, math.ceil(hits[0] + window - now))
        hits.append(now)
        return None


class RateLimiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.local = SlidingWindowLimiter()
        self.mode: RateLimitMode = "shared"
        self._script = client.register_script(_SLIDING_WINDOW)

    def _set_mode(self, mode: RateLimitMode, reason: str = "") -> None:
        if mode != self.mode:
            if mode == "per_process":
                log.warning("rate limits fall back to this process only: Redis %s", reason)
            else:
                log.warning("rate limits shared through Redis again")
        self.mode = mode

    async def check(
        self, scope: str, key: object, limit: int, window_seconds: float, *, redis_ok: bool = True
    ) -> int | None:
        """Count one hit of `key` in `scope`; None when allowed, else seconds to wait."""
        name = f"{KEY_PREFIX}{scope}:{key}"
        if redis_ok:
            try:
                # A deadline on this task rather than asyncio.wait_for's task per call.
                async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                    wait_ms = await self._script(
                        keys=[name],
                        args=[limit, max(1, int(window_seconds * 1000)), uuid.uuid4().hex],
                    )
            except (TimeoutError, RedisError, OSError) as exc:
                self._set_mode("per_process", type(exc).__name__)
            else:
                self._set_mode("shared")
                wait = int(wait_ms)
                return None if wait < 0 else max(1, math.ceil(wait / 1000))
        else:
            self._set_mode("per_process", "is unavailable")
        return self.local.check(name, limit, window_seconds)
