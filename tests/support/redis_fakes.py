"""Stand-ins for the collaborators of the Redis procedures, for unit tests of their
decisions: a fake clock, a Redis that answers or fails as scripted, API instances that
report scripted metrics and carry a canary over a scripted SSE stream, a database that
reports scripted stored-vs-delivered windows, and restarters that succeed or fail.

Scripts are sequences: each call takes the next answer, the last one repeats; an
exception in a script is raised instead of answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from e2ee_ops.adapters.api import SseEvent
from e2ee_ops.adapters.postgres import DeliveryWindow
from e2ee_ops.adapters.redis_client import LatencyEvent
from e2ee_ops.adapters.restarter import RestartResult
from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.redis_outage import Canary, RedisTargets


class Script:
    """Answers in order; the last one repeats; exceptions are raised."""

    def __init__(self, answers: Sequence[Any]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> Any:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Clock:
    """A monotonic clock that only `sleep` moves (or `advance`)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeRedis:
    def __init__(
        self,
        pings: Sequence[float | BaseException] = (1.5,),
        *,
        stats: dict[str, Any] | None = None,
        replication: dict[str, Any] | None = None,
        spikes: Sequence[LatencyEvent] = (),
    ) -> None:
        self.pings = Script(pings)
        self._stats = stats if stats is not None else {}
        self._replication = replication if replication is not None else {}
        self._spikes = list(spikes)

    def ping(self) -> float:
        return float(self.pings())

    def stats(self) -> dict[str, Any]:
        return self._stats

    def replication(self) -> dict[str, Any]:
        return self._replication

    def latency_latest(self) -> list[LatencyEvent]:
        return self._spikes


HEALTHY = {"redis_status": "ok", "relay_lag": False}
DOWN = {"redis_status": "unavailable", "relay_lag": True}


class FakeStream:
    """The canary receiver's SSE stream: it opens (a heartbeat) unless told not to, and
    the message sent meanwhile arrives `latency_ms` after it was sent, on `clock`."""

    def __init__(
        self,
        clock: Clock,
        *,
        opens: bool = True,
        arrives: bool = True,
        latency_ms: float = 125.0,
        also: Sequence[int | None] = (),
        error: BaseException | None = None,
    ) -> None:
        self.clock = clock
        self.opens = opens
        self.arrives = arrives
        self.latency_ms = latency_ms
        self.also = list(also)  # other messages the stream carries
        self.error = error
        self.received: list[tuple[float, SseEvent]] = []
        self.sent: int | None = None  # set by FakeApi.send_message
        self.waits: list[float] = []
        self.closed = False

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    @property
    def opened(self) -> bool:
        return bool(self.received)

    def message_ids(self) -> list[int]:
        return [int(e.data.get("message_id", 0)) for _, e in self.received if e.event == "message"]

    def wait_for(self, predicate: Callable[[FakeStream], bool], deadline_seconds: float) -> bool:
        self.waits.append(deadline_seconds)
        if len(self.waits) == 1 and self.opens:
            self.received.append((self.clock.now, SseEvent("heartbeat", None, {})))
        if len(self.waits) == 2 and self.arrives and self.sent is not None:
            for other in self.also:  # arrive first, as soon as sent (None: no message id)
                data = {} if other is None else {"message_id": other}
                self.received.append((self.clock.now, SseEvent("message", None, data)))
            at = self.clock.now + self.latency_ms / 1000.0
            self.received.append((at, SseEvent("message", None, {"message_id": self.sent})))
        return predicate(self)


class FakeApi:
    """One API instance: scripted /dm/metrics answers, an SSE stream of `events`, and the
    calls a canary makes."""

    def __init__(
        self,
        host: str = "api-1",
        metrics: Sequence[dict[str, Any] | BaseException] = (HEALTHY,),
        *,
        events: Sequence[SseEvent] = (),
        devices: Sequence[dict[str, Any]] = ({"device_id": "dev-b", "bundle_version": 3},),
        message_id: int = 7,
        stream: FakeStream | None = None,
    ) -> None:
        self.host = host
        self.metrics = Script(metrics)
        self.events = list(events)
        self.devices = list(devices)
        self.message_id = message_id
        self.the_stream = stream
        self.delivers_to: FakeStream | None = None  # the receiver's stream, for a sender
        self.calls: list[tuple[str, Any]] = []

    def dm_metrics(self) -> dict[str, Any]:
        return dict(self.metrics())

    def stream(self, device_id: str, *, deadline_seconds: float) -> Iterator[SseEvent]:
        self.calls.append(("stream", (device_id, deadline_seconds)))
        yield from self.events

    def open_stream(self, device_id: str, *, lifetime_seconds: float) -> FakeStream:
        self.calls.append(("open_stream", (device_id, lifetime_seconds)))
        assert self.the_stream is not None
        return self.the_stream

    def create_conversation(self, peer_user_id: str) -> dict[str, Any]:
        self.calls.append(("create_conversation", peer_user_id))
        return {"conversation_id": 42}

    def user_devices(self, account_id: str) -> list[dict[str, Any]]:
        self.calls.append(("user_devices", account_id))
        return self.devices

    def send_message(
        self,
        conversation_id: str,
        *,
        sender_device_id: str,
        client_message_id: str,
        envelopes: list[dict[str, Any]],
    ) -> dict[str, Any]:
        self.calls.append(
            ("send_message", (conversation_id, sender_device_id, client_message_id, envelopes))
        )
        if self.delivers_to is not None:
            self.delivers_to.sent = self.message_id
        return {"message_id": self.message_id}

    def ack(self, device_id: str, message_ids: Sequence[int]) -> int:
        self.calls.append(("ack", (device_id, list(message_ids))))
        return len(message_ids)


def canary(
    clock: Clock, stream: FakeStream | None = None, *, timeout: float = 15.0, **sender: Any
) -> tuple[Canary, FakeApi, FakeApi, FakeStream]:
    """A canary pair whose receiver's stream is `stream` (a default one when None)."""
    stream = stream or FakeStream(clock)
    a = FakeApi("api-a", **sender)
    a.delivers_to = stream
    b = FakeApi("api-b", stream=stream)
    c = Canary(
        sender=a,  # type: ignore[arg-type]
        sender_device="dev-a",
        receiver=b,  # type: ignore[arg-type]
        receiver_account="acct-b",
        receiver_device="dev-b",
        delivery_timeout_seconds=timeout,
        monotonic=clock.monotonic,
    )
    return c, a, b, stream


@dataclass
class FakeDb:
    recent: DeliveryWindow | None = None
    windows: Sequence[DeliveryWindow | BaseException] = ()
    asked: list[tuple[Any, ...]] = field(default_factory=list)

    def recent_window(self, minutes: float) -> DeliveryWindow:
        self.asked.append(("recent_window", minutes))
        assert self.recent is not None
        return self.recent

    def delivery_window(self, start: datetime, end: datetime) -> DeliveryWindow:
        self.asked.append(("delivery_window", start, end))
        answer = self.windows[min(len(self.asked) - 1, len(self.windows) - 1)]
        if isinstance(answer, BaseException):
            raise answer
        return replace(answer, start=start, end=end)


class FakeRestarter:
    def __init__(
        self,
        spec: Any = "systemctl restart redis",
        *,
        seconds: float = 2.25,
        error: BaseException | None = None,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.spec = spec
        self.seconds = seconds
        self.error = error
        self.on_restart = on_restart
        self.restarts = 0

    def describe(self) -> str:
        return f"run `{self.spec}`"

    def restart(self) -> RestartResult:
        self.restarts += 1
        if self.error is not None:
            raise self.error
        self.on_restart()
        return RestartResult("redis", ["systemctl"], 0, self.seconds, "")


class FakeLog:
    def __init__(self, lines: Sequence[str] | BaseException) -> None:
        self.lines = lines
        self.asked: list[tuple[str, ...]] = []

    def describe(self) -> str:
        return "api.log"

    def matching(self, markers: Sequence[str]) -> list[str]:
        self.asked.append(tuple(markers))
        if isinstance(self.lines, BaseException):
            raise self.lines
        return list(self.lines)


def targets(
    clock: Clock,
    *,
    apis: Sequence[FakeApi] = (),
    redis: FakeRedis | None = None,
    **kw: Any,
) -> RedisTargets:
    """RedisTargets over fakes, on `clock`, with the runbook's thresholds by default."""
    messages: list[str] = []
    kw.setdefault("thresholds", Thresholds())
    t = RedisTargets(
        admin_apis=list(apis) or [FakeApi()],  # type: ignore[arg-type]
        redis=redis or FakeRedis(),  # type: ignore[arg-type]
        db=kw.pop("db", None),
        canary=kw.pop("canary", None),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        progress=messages.append,
        **kw,
    )
    t.extra["progress"] = messages
    return t
