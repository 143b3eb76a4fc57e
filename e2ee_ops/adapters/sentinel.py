"""Redis Sentinel as the runbook's Sentinel path reads and drives it.

Each sentinel is asked on its own (a view per sentinel, so a quorum can be counted);
the data nodes are asked `ROLE` and `INFO replication` directly. Every call has a
socket timeout and one attempt; redis-py errors become a `SentinelView.error` (reads)
or UnreachableError / TimedOutError / ServiceError (actions), naming the host, never
the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from e2ee_ops.adapters.redis_client import redis_errors
from e2ee_ops.secret import Secret


@dataclass(frozen=True)
class ReplicaState:
    """A replica as a sentinel sees it (SENTINEL REPLICAS)."""

    address: str
    flags: list[str]
    link_status: str  # master-link-status: ok / err
    offset: int | None  # slave-repl-offset

    @property
    def down(self) -> bool:
        return bool({"s_down", "o_down", "disconnected"} & set(self.flags))


@dataclass(frozen=True)
class SentinelView:
    """What one sentinel says about the service, or why it could not be asked."""

    sentinel: str
    primary: str | None = None  # host:port
    flags: list[str] = field(default_factory=list)
    quorum: int | None = None
    other_sentinels: int | None = None
    down_after_ms: int | None = None
    failover_timeout_ms: int | None = None
    # Milliseconds since this sentinel saw the primary's current role reported: after a
    # failover, about the time since the promotion.
    role_reported_ms: int | None = None
    ckquorum: str | None = None  # SENTINEL CKQUORUM's answer, as given
    replicas: list[ReplicaState] = field(default_factory=list)
    error: str | None = None

    @property
    def primary_down(self) -> bool:
        return bool({"s_down", "o_down"} & set(self.flags))

    @property
    def failover_in_progress(self) -> bool:
        return any(f.startswith("failover") or f == "promoted" for f in self.flags)

    @property
    def quorum_ok(self) -> bool:
        return (self.ckquorum or "").startswith("OK")


@dataclass(frozen=True)
class NodeRole:
    """`ROLE` of one data node: master (with its replicas' offsets) or replica."""

    address: str
    role: str  # master / slave
    primary: str | None = None  # for a replica: the primary it follows
    link: str | None = None  # for a replica: connect / connecting / sync / connected
    offset: int | None = None  # master: its offset; replica: the offset it has


class SentinelAdmin:
    """Read and drive one Sentinel-managed service (`service`) through its sentinels."""

    def __init__(
        self,
        hosts: Sequence[str],
        service: str,
        *,
        password: Secret | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.hosts = list(hosts)
        self.service = service
        self.timeout = timeout
        self._password = password

    def __repr__(self) -> str:
        return f"SentinelAdmin({self.service!r}, {self.hosts!r})"

    def close(self) -> None:
        """Nothing stays open: every call opens and closes its own connection."""

    def _client(self, address: str, *, data_node: bool = False) -> redis.Redis:
        host, _, port = address.rpartition(":")
        return redis.Redis(
            host=host,
            port=int(port),
            # Sentinels take no password here; the data nodes take redis.password.
            password=self._password.reveal() if (data_node and self._password) else None,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    # ---- reads ------------------------------------------------------------------------

    def views(self) -> list[SentinelView]:
        """Every configured sentinel's view, in config order (unreachable ones with error)."""
        return [self.view(host) for host in self.hosts]

    def view(self, sentinel: str) -> SentinelView:
        try:
            with self._client(sentinel) as c:
                master: dict[str, Any] = c.sentinel_master(self.service)
                replicas: list[dict[str, Any]] = c.sentinel_slaves(self.service)
                try:
                    ckquorum = str(c.execute_command("SENTINEL", "CKQUORUM", self.service))
                except rx.ResponseError as exc:  # NOQUORUM comes back as an error reply
                    ckquorum = str(exc)
        except rx.RedisError as exc:
            return SentinelView(sentinel, error=_reason(exc))
        except OSError as exc:
            return SentinelView(sentinel, error=type(exc).__name__)
        return SentinelView(
            sentinel=sentinel,
            primary=f"{master['ip']}:{master['port']}",
            flags=str(master.get("flags", "")).split(","),
            quorum=_int(master.get("quorum")),
            other_sentinels=_int(master.get("num-other-sentinels")),
            down_after_ms=_int(master.get("down-after-milliseconds")),
            failover_timeout_ms=_int(master.get("failover-timeout")),
            role_reported_ms=_int(master.get("role-reported-time")),
            ckquorum=ckquorum,
            replicas=[
                ReplicaState(
                    address=f"{r['ip']}:{r['port']}",
                    flags=str(r.get("flags", "")).split(","),
                    link_status=str(r.get("master-link-status", "unknown")),
                    offset=_int(r.get("slave-repl-offset")),
                )
                for r in replicas
            ],
        )

    def role(self, address: str) -> NodeRole:
        """`ROLE` of the data node at `address` (host:port); raises when it does not answer."""
        with self._errors(address, "ROLE"), self._client(address, data_node=True) as c:
            reply = c.execute_command("ROLE")
        kind = str(reply[0])
        if kind == "master":
            return NodeRole(address, kind, offset=_int(reply[1]))
        return NodeRole(
            address,
            kind,
            primary=f"{reply[1]}:{reply[2]}",
            link=str(reply[3]),
            offset=_int(reply[4]),
        )

    def replica_lag(self, primary: str) -> dict[str, int]:
        """Seconds since each replica's last ack, from the primary's INFO replication."""
        with self._errors(primary, "INFO replication"), self._client(primary, data_node=True) as c:
            info: dict[str, Any] = c.info("replication")
        lags: dict[str, int] = {}
        for key, value in info.items():
            if key.startswith("slave") and isinstance(value, dict) and "lag" in value:
                lags[f"{value['ip']}:{value['port']}"] = int(value["lag"])
        return lags

    # ---- actions ----------------------------------------------------------------------

    def failover(self, sentinel: str) -> None:
        """`SENTINEL FAILOVER <service>` on `sentinel`: promote a replica without waiting
        for the sentinels to agree the primary is down."""
        with self._errors(sentinel, "SENTINEL FAILOVER"), self._client(sentinel) as c:
            c.execute_command("SENTINEL", "FAILOVER", self.service)

    def _errors(self, address: str, what: str) -> AbstractContextManager[None]:
        return redis_errors(address, what, self.timeout)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _reason(exc: rx.RedisError) -> str:
    if isinstance(exc, rx.TimeoutError):
        return "timed out"
    if isinstance(exc, rx.ConnectionError):
        return "unreachable"
    return f"{type(exc).__name__}: {exc}"
