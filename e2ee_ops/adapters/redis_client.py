"""Redis as the runbook checks it: PING, INFO stats/replication, latency.

Connects by URL (redis://, rediss:// for TLS, unix://) or through Sentinel
(`redis.sentinel: {hosts, service_name}`). Every call has a socket timeout; redis-py
errors become UnreachableError / TimedOutError / AuthError / ServiceError naming
the host, never the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from e2ee_ops.adapters.http import host_of
from e2ee_ops.errors import AuthError, ServiceError, TimedOutError, UnreachableError
from e2ee_ops.secret import Secret

# INFO fields the outage checks read; the rest stays available through info().
STATS_FIELDS = (
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "rejected_connections",
    "pubsub_channels",
    "pubsub_patterns",
    "expired_keys",
    "evicted_keys",
)


@dataclass(frozen=True)
class LatencyEvent:
    """One row of LATENCY LATEST: an event's latest and maximum latency spike."""

    event: str
    last_at: int
    latest_ms: int
    max_ms: int


class RedisProbe:
    """Read-only access to one Redis deployment (a URL or a Sentinel-managed master)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        sentinel_hosts: Sequence[str] = (),
        service_name: str = "mymaster",
        password: Secret | None = None,
        timeout: float = 2.0,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        if bool(url) == bool(sentinel_hosts):
            raise ValueError("give exactly one of url or sentinel_hosts")
        self.timeout = timeout
        self._monotonic = monotonic
        secret = password.reveal() if password else None
        common: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # One attempt per call: a probe must report a dead Redis, not wait it out.
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
        }
        self._client: redis.Redis
        if url:
            self.host = _host_of(url)
            if secret is not None:
                common["password"] = secret
            self._client = redis.Redis.from_url(url, **common)
        else:
            self.host = f"sentinel service {service_name} ({', '.join(sentinel_hosts)})"
            sentinels = [_host_port(h) for h in sentinel_hosts]
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                sentinels,
                sentinel_kwargs={
                    "socket_timeout": timeout,
                    "socket_connect_timeout": timeout,
                    "retry": Retry(NoBackoff(), 0),
                },
                password=secret,
                **common,
            )
            self._client = sentinel.master_for(service_name, **common)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return f"RedisProbe({self.host!r})"

    def close(self) -> None:
        self._client.close()

    def ping(self) -> float:
        """PING; returns the round trip in milliseconds."""
        started = self._monotonic()
        with self._errors("PING"):
            self._client.ping()
        return (self._monotonic() - started) * 1000.0

    def info(self, section: str) -> dict[str, Any]:
        """INFO <section> as a dict (`stats`, `replication`, `server`, …)."""
        with self._errors(f"INFO {section}"):
            result: dict[str, Any] = self._client.info(section)
        return result

    def stats(self) -> dict[str, Any]:
        """The INFO stats fields the outage checks use (STATS_FIELDS)."""
        info = self.info("stats")
        return {name: info[name] for name in STATS_FIELDS if name in info}

    def replication(self) -> dict[str, Any]:
        """INFO replication: role, connected replicas, link status."""
        return self.info("replication")

    def latency_latest(self) -> list[LatencyEvent]:
        """LATENCY LATEST (empty unless latency-monitor-threshold is set on the server)."""
        with self._errors("LATENCY LATEST"):
            rows = self._client.execute_command("LATENCY LATEST")  # type: ignore[no-untyped-call]
        events = []
        for row in rows or []:
            name, last_at, latest, maximum = row[:4]
            events.append(LatencyEvent(str(name), int(last_at), int(latest), int(maximum)))
        return events

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return redis_errors(self.host, what, self.timeout)


@contextmanager
def redis_errors(host: str, what: str, timeout: float) -> Iterator[None]:
    """redis-py's errors of `what` against `host` as the toolkit's, naming the host."""
    try:
        yield
    except (rx.AuthenticationError, rx.AuthorizationError, rx.NoPermissionError) as exc:
        raise AuthError(
            f"Redis at {host} refused the credentials for {what}",
            hint="check redis.password or the ACL user in redis.url",
        ) from exc
    except rx.TimeoutError as exc:
        raise TimedOutError(
            f"Redis at {host} did not answer {what} within {timeout:g} s",
            host=host,
            hint="check the Redis host's load, or raise redis.timeout_seconds",
        ) from exc
    except MasterNotFoundError as exc:
        raise UnreachableError(
            f"no sentinel knows a master for {host}",
            host=host,
            hint="check redis.sentinel.hosts and service_name",
        ) from exc
    except rx.ConnectionError as exc:
        raise UnreachableError(
            f"cannot connect to Redis at {host}",
            host=host,
            hint="check that Redis runs (e2ee-ops redis check) and redis.url is right",
        ) from exc
    except rx.RedisError as exc:
        raise ServiceError(f"Redis at {host} failed {what}: {exc}") from exc


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return host_of(url, default="localhost", default_port=6379)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)
