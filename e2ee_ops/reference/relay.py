"""Redis pub/sub relay between API instances, and the local registry of open streams.

PostgreSQL is the source of truth; a pub/sub message is only a wake-up call telling
each instance which devices have something new. A woken stream reads what it has
not yet sent from PostgreSQL, so a lost wake-up delays delivery but loses nothing:
when Redis comes back (or the subscription is re-established) every local stream is
woken and catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from e2ee_ops.reference.settings import ServerSettings
from e2ee_ops.reference.store import HandOver, Row, Store
from e2ee_ops.reference.telemetry import Telemetry
from e2ee_ops.reference.tokens import TokenCache

log = logging.getLogger("e2ee_ops.reference.relay")
CHANNEL = "e2ee:dm:deliver"
PROBE_INTERVAL_SECONDS = 1.0
RECORD_RETRY_SECONDS = 1.0


# At most this many messages per stream per hand-over, and this many streams per query.
STREAM_BATCH = 200
HAND_OVER_STREAMS = 100


@dataclass(eq=False)
class Subscription:
    """One open SSE stream: its device and token, what has been handed over to it and not
    yet written (`ready`), and the event that wakes it."""

    device_id: uuid.UUID
    token_hash: str
    # Nothing at or below the stream's Last-Event-ID is handed over to it.
    floor: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Handed over on this stream and not known to be acknowledged: never handed again.
    emitted: set[int] = field(default_factory=set)
    ready: deque[Row] = field(default_factory=deque)
    # The last hand-over filled a whole batch: the stream asks for the rest once written.
    full: bool = False
    revoked: bool = False
    # Why the last hand-over failed, raised in the stream (which ends).
    failure: Exception | None = None
    closed: bool = False


class StreamHub:
    """Open SSE streams of this process, by device, and their hand-overs.

    A wake-up does not query per stream: the streams it concerns wait in `_pending`, and
    one task hands over to all of them with one statement per `HAND_OVER_STREAMS`, then
    gives each stream its own rows and wakes it. A stream is in at most one statement
    at a time (one task, and a stream asked for during a statement waits for the next),
    and each statement excludes what the stream was already handed, so no stream gets
    a message twice; rows are given by the stream's place in the statement, so no stream
    gets another's.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_device: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        # Streams waiting for a hand-over, with the id it starts after (the lowest asked).
        self._pending: dict[Subscription, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def register(self, device_id: uuid.UUID, token_hash: str, floor: int) -> Subscription:
        sub = Subscription(device_id, token_hash, floor)
        self._by_device[device_id].add(sub)
        self.request(sub, floor)  # a new stream starts by catching up
        return sub

    def unregister(self, sub: Subscription) -> None:
        sub.closed = True
        self._pending.pop(sub, None)
        subs = self._by_device.get(sub.device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_device[sub.device_id]

    def streams(self) -> list[Subscription]:
        return [sub for subs in self._by_device.values() for sub in subs]

    def revoke(self, subs: list[Subscription]) -> None:
        """These streams lost their access: woken, they close."""
        for sub in subs:
            if not sub.closed:
                sub.revoked = True
                sub.wake.set()

    def request(self, sub: Subscription, after: int) -> None:
        """Hand over to `sub` its pending messages after `after` (soon, with others)."""
        if sub.closed or self._closing:
            return
        self._pending[sub] = min(after, self._pending.get(sub, after))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._hand_over(), name="stream-hand-over"
            )

    def wake(self, device_ids: list[uuid.UUID]) -> None:
        for device_id in device_ids:
            for sub in self._by_device.get(device_id, ()):
                self.request(sub, sub.floor)

    def wake_all(self) -> None:
        for sub in self.streams():
            self.request(sub, sub.floor)

    def close(self) -> None:
        """Shutting down: no more hand-overs; every stream wakes (and says goodbye)."""
        self._closing = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
        for sub in self.streams():
            sub.wake.set()

    async def _hand_over(self) -> None:
        while self._pending:
            batch = list(itertools.islice(self._pending.items(), HAND_OVER_STREAMS))
            for sub, _ in batch:
                del self._pending[sub]
            wanted = [
                HandOver(sub.device_id, after, sorted(m for m in sub.emitted if m > after))
                for sub, after in batch
            ]
            try:
                handed = await self.store.hand_over_many(wanted, STREAM_BATCH)
            except Exception as exc:  # noqa: BLE001 - each stream reports it, and ends
                if self._closing:
                    return
                for sub, _ in batch:
                    sub.failure = exc
                    sub.wake.set()
                continue
            for (sub, _), rows in zip(batch, handed, strict=True):
                if sub.closed or not rows:
                    continue  # a closed stream's rows stay unacknowledged: sent again later
                sub.emitted.update(int(row["message_id"]) for row in rows)
                sub.ready.extend(rows)
                sub.full = len(rows) == STREAM_BATCH
                sub.wake.set()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_device.values())


def redis_client(settings: ServerSettings) -> aioredis.Redis:
    """The client of the relay and the rate limiter: by URL, or through Sentinel.

    One quick retry: after a Redis restart the first use of a pooled connection fails on
    the dead socket, and that alone is no outage. Through Sentinel every new connection
    asks the sentinels for the current primary, so after a failover the next connection
    (the retry, or the subscriber's re-subscription) lands on the new primary.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": 1.0,
        "socket_timeout": 2.0,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if not settings.redis_sentinels:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    sentinels = []
    for host in settings.redis_sentinels:
        name, _, port = host.rpartition(":")
        sentinels.append((name, int(port)))
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
    )
    client: aioredis.Redis = sentinel.master_for(settings.redis_sentinel_service, **options)
    return client


class Relay:
    def __init__(
        self,
        settings: ServerSettings,
        hub: StreamHub,
        telemetry: Telemetry,
        store: Store,
        tokens: TokenCache,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.tokens = tokens
        self.telemetry = telemetry
        self.store = store
        self.client = redis_client(settings)
        self.redis_ok = False
        self._state_known = False
        # This instance's own record of Redis outages, persisted in relay_outages.
        self.unavailable_since: datetime | None = None
        self.last_outage: tuple[datetime, datetime] | None = None
        self._records: asyncio.Queue[tuple[str, datetime, str]] = asyncio.Queue()
        self.pubsub_lag_seconds: float | None = None
        self._missed_publish = False
        self._probe_sent_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        # Set when a publish failed: the subscriber re-subscribes, which re-checks
        # Redis and wakes every stream to catch up from PostgreSQL.
        self._resync = asyncio.Event()

    # ---- state seen by heartbeats and metrics ---------------------------------------

    @property
    def redis_status(self) -> str:
        return "ok" if self.redis_ok else "unavailable"

    @property
    def relay_lag(self) -> bool:
        threshold = self.settings.relay_lag_threshold_seconds
        if not self.redis_ok or self._missed_publish:
            return True
        if self.pubsub_lag_seconds is not None and self.pubsub_lag_seconds > threshold:
            return True
        outstanding = self._probe_sent_at
        return outstanding is not None and time.monotonic() - outstanding > threshold

    def unavailable_seconds(self) -> float:
        since = self.unavailable_since
        return 0.0 if since is None else max((datetime.now(UTC) - since).total_seconds(), 0.0)

    def _export(self) -> None:
        self.telemetry.redis_up.set(1 if self.redis_ok else 0)
        self.telemetry.relay_lag.set(1 if self.relay_lag else 0)
        if self.pubsub_lag_seconds is not None:
            self.telemetry.pubsub_lag.set(self.pubsub_lag_seconds)

    def _set_redis(self, ok: bool, reason: str = "") -> None:
        if ok != self.redis_ok:
            if ok:
                log.warning("Redis available again; waking every stream to catch up")
            else:
                log.warning("Redis unavailable: %s; messages are stored, SSE lags", reason)
        if ok != self.redis_ok or not self._state_known:
            self._record_change(ok, reason)
        self._state_known = True
        self.redis_ok = ok
        if not ok:
            # Whoever noticed, the subscriber re-subscribes: that is what brings the
            # relay back once Redis answers, with or without traffic meanwhile.
            self._resync.set()
        self._export()

    def _record_change(self, ok: bool, reason: str) -> None:
        now = datetime.now(UTC)
        if ok and self.unavailable_since is not None:
            self.last_outage = (self.unavailable_since, now)
            self.unavailable_since = None
            self._records.put_nowait(("regained", now, ""))
        elif not ok and self.unavailable_since is None:
            self.unavailable_since = now
            self._records.put_nowait(("lost", now, reason or "unknown"))

    async def _load_record(self) -> None:
        """Pick up this instance's open outage from before a restart, and its last one."""
        try:
            rows = await self.store.relay_outages(self.settings.instance_id, limit=1)
        except Exception as exc:  # noqa: BLE001 - the record is best effort, never fatal
            log.warning("could not read this instance's relay outage record: %s", exc)
            return
        for row in rows:
            if row["unavailable_since"] is not None and self.unavailable_since is None:
                self.unavailable_since = row["unavailable_since"]
            if row["last_lost_at"] is not None and self.last_outage is None:
                self.last_outage = (row["last_lost_at"], row["last_regained_at"])

    async def _record_loop(self) -> None:
        """Persist state changes in order; a database hiccup delays them, never drops them."""
        while True:
            kind, at, reason = await self._records.get()
            while True:
                try:
                    if kind == "lost":
                        await self.store.record_redis_lost(self.settings.instance_id, at, reason)
                    else:
                        await self.store.record_redis_regained(self.settings.instance_id, at)
                    self._records.task_done()
                    break
                except Exception as exc:  # noqa: BLE001 - retried until it lands
                    log.warning("could not record the relay's %s event: %s", kind, exc)
                    await asyncio.sleep(RECORD_RETRY_SECONDS)

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_record()
        self._tasks = [
            asyncio.create_task(self._record_loop(), name="relay-record"),
            asyncio.create_task(self._subscribe_loop(), name="relay-subscribe"),
            asyncio.create_task(self._probe_loop(), name="relay-probe"),
            asyncio.create_task(self._access_loop(), name="stream-access"),
        ]

    async def stop(self) -> None:
        self._stopping.set()
        recorder, loops = self._tasks[:1], self._tasks[1:]
        for task in loops:
            task.cancel()
        # Changes seen so far reach the database before the pool closes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._records.join(), timeout=2.0)
        for task in loops + recorder:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), timeout=1.0))
        except (TimeoutError, RedisError, OSError):
            return False

    # ---- publishing -----------------------------------------------------------------

    async def publish(self, device_ids: list[uuid.UUID]) -> bool:
        payload = json.dumps({"kind": "deliver", "devices": [str(d) for d in device_ids]})
        try:
            async with asyncio.timeout(1.0):  # no task per message, unlike asyncio.wait_for
                await self.client.publish(CHANNEL, payload)
            return True
        except (TimeoutError, RedisError, OSError) as exc:
            self.telemetry.publish_failures.inc()
            self._missed_publish = True
            self._set_redis(False, type(exc).__name__)
            return False

    async def publish_forget(
        self, *, token_hashes: list[str] | None = None, user_ids: list[int] | None = None
    ) -> None:
        """Forget tokens or users here at once, and on the other instances through Redis
        (best effort: while Redis is down they keep them for up to the cache's ttl)."""
        hashes, users = token_hashes or [], user_ids or []
        self.tokens.forget(token_hashes=hashes, user_ids=users)
        payload = json.dumps({"kind": "forget", "tokens": hashes, "users": users})
        try:
            await asyncio.wait_for(self.client.publish(CHANNEL, payload), timeout=1.0)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("could not tell the other instances to forget a token: %s", exc)

    # ---- background loops -----------------------------------------------------------

    async def _subscribe_loop(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                self._resync.clear()
                await asyncio.wait_for(pubsub.subscribe(CHANNEL), timeout=2.0)
                # Subscribed is not enough (a write pause still lets SUBSCRIBE through):
                # Redis must take a publish before the relay counts as working.
                await asyncio.wait_for(self.client.publish(CHANNEL, self._probe()), timeout=1.0)
                # Anything published while we were not subscribed was missed here.
                self._missed_publish = False
                self._probe_sent_at = None
                self._set_redis(True)
                self.hub.wake_all()
                # A forget published while we were not subscribed was missed too.
                self.tokens.clear()
                while not self._stopping.is_set() and not self._resync.is_set():
                    message = await pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._handle(message["data"])
            except (TimeoutError, RedisError, OSError) as exc:
                self._set_redis(False, type(exc).__name__)
                await asyncio.sleep(self.settings.redis_retry_seconds)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _handle(self, raw: bytes | str) -> None:
        try:
            payload = json.loads(raw)
        except (TypeError, ValueError):
            return
        if payload.get("kind") == "probe":
            if payload.get("origin") == self.settings.instance_id:
                self.pubsub_lag_seconds = max(time.time() - float(payload["ts"]), 0.0)
                self._probe_sent_at = None
                self._export()
            return
        if payload.get("kind") == "forget":
            with contextlib.suppress(TypeError, ValueError):
                self.tokens.forget(
                    token_hashes=[str(h) for h in payload.get("tokens", [])],
                    user_ids=[int(u) for u in payload.get("users", [])],
                )
            return
        devices = []
        for raw_id in payload.get("devices", []):
            with contextlib.suppress(ValueError):
                devices.append(uuid.UUID(raw_id))
        self.hub.wake(devices)

    async def _access_loop(self) -> None:
        """Once per heartbeat interval, one query for every open stream of this process:
        a token revoked, a device removed or a user blocked ends the stream."""
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.heartbeat_seconds)
            streams = self.hub.streams()
            if not streams:
                continue
            try:
                allowed = await self.store.streams_allowed(
                    {(s.device_id, s.token_hash) for s in streams}
                )
            except Exception as exc:  # noqa: BLE001 - checked again next interval
                log.warning("could not check the open streams' access: %s", exc)
                continue
            self.hub.revoke([s for s in streams if (s.device_id, s.token_hash) not in allowed])

    def _probe(self) -> str:
        return json.dumps({"kind": "probe", "origin": self.settings.instance_id, "ts": time.time()})

    async def _probe_loop(self) -> None:
        """Publish a timestamped probe to ourselves: its round trip is the pub/sub lag."""
        while not self._stopping.is_set():
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            if not self.redis_ok:
                continue
            try:
                if self._probe_sent_at is None:
                    self._probe_sent_at = time.monotonic()
                await asyncio.wait_for(self.client.publish(CHANNEL, self._probe()), timeout=1.0)
            except (TimeoutError, RedisError, OSError) as exc:
                self._set_redis(False, type(exc).__name__)
            self._export()
