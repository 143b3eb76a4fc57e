"""Sentinels and data nodes answering from a script, with SentinelAdmin's reads and its
one action, for the procedures' decision logic (the real ones are in the sentinel
integration tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from e2ee_ops.adapters.sentinel import NodeRole, ReplicaState, SentinelView
from e2ee_ops.errors import E2eeOpsError, UnreachableError

P1, P2, P3 = "10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"
OK = "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
NOQUORUM = "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the majority"
HOSTS = ["s1:26379", "s2:26379", "s3:26379"]


def up(address: str, link: str = "ok") -> ReplicaState:
    return ReplicaState(address, ["slave"], link, 100)


def down(address: str) -> ReplicaState:
    return ReplicaState(address, ["s_down", "slave", "disconnected"], "err", 0)


def view(name: str, primary: str | None = P1, **values: object) -> SentinelView:
    defaults: dict[str, object] = {
        "flags": ["master"],
        "quorum": 2,
        "ckquorum": OK,
        "replicas": [up(P2)],
    }
    return SentinelView(name, primary=primary, **{**defaults, **values})  # type: ignore[arg-type]


def gone(name: str) -> SentinelView:
    return SentinelView(name, error="unreachable")


RoleAnswer = NodeRole | E2eeOpsError | Callable[[], NodeRole]


class Sentinels:
    """SentinelAdmin's reads and its one action, answered from a script: `views` is a
    list of answers, each call moving on to the next until the last (which then stays),
    or a function; ROLE from `roles` (a node not listed does not answer)."""

    def __init__(
        self,
        views: list[list[SentinelView]] | Callable[[], list[SentinelView]],
        roles: dict[str, RoleAnswer] | None = None,
        lags: dict[str, int] | E2eeOpsError | None = None,
        hosts: Sequence[str] = HOSTS,
    ) -> None:
        self.hosts = list(hosts)
        self.service = "e2ee"
        self.script = views
        self.roles: dict[str, RoleAnswer] = roles if roles is not None else {P1: master(P1)}
        self.lags = lags if lags is not None else {P2: 0}
        self.lag_asked: list[str] = []
        self.role_asked: list[str] = []
        self.failovers: list[str] = []
        self.failover_error: E2eeOpsError | None = None
        self.on_failover: Callable[[], None] = lambda: None
        self.on_view: Callable[[], None] = lambda: None  # before each answer to views()

    def views(self) -> list[SentinelView]:
        self.on_view()
        if callable(self.script):
            return self.script()
        if len(self.script) > 1:
            return self.script.pop(0)
        return self.script[0]

    def role(self, address: str) -> NodeRole:
        self.role_asked.append(address)
        if address is None:  # as SentinelAdmin.role fails on no address
            raise AttributeError("'NoneType' object has no attribute 'rpartition'")
        answer = self.roles.get(address)
        if answer is None:
            raise UnreachableError(f"{address} does not answer ROLE", host=address)
        if isinstance(answer, E2eeOpsError):
            raise answer
        return answer() if callable(answer) else answer

    def replica_lag(self, primary: str) -> dict[str, int]:
        self.lag_asked.append(primary)
        if isinstance(self.lags, E2eeOpsError):
            raise self.lags
        return self.lags

    def failover(self, sentinel: str) -> None:
        if self.failover_error is not None:
            raise self.failover_error
        self.failovers.append(sentinel)
        self.on_failover()


def master(address: str) -> NodeRole:
    return NodeRole(address, "master", offset=1000)


def replica_of(address: str, primary: str, link: str = "connected") -> NodeRole:
    return NodeRole(address, "slave", primary=primary, link=link, offset=1000)
