"""The service's PostgreSQL, read by operators: every operator SQL statement lives here.

Metadata only: no statement here selects a ciphertext column, and none touches
`dm_envelopes`. Every connection has a connect timeout and a statement timeout.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from e2ee_ops.adapters.locks import wait_for_lock
from e2ee_ops.errors import ConfigError, E2eeOpsError, TimedOutError, UnreachableError

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class UndeliveredMessage:
    message_id: int
    created_at: datetime
    devices_pending: int


@dataclass(frozen=True)
class DeliveryWindow:
    """Messages stored in [start, end) and how many reached every recipient device."""

    start: datetime
    end: datetime
    stored: int
    delivered: int
    undelivered: list[UndeliveredMessage]

    @property
    def all_delivered(self) -> bool:
        return self.stored == self.delivered


@dataclass(frozen=True)
class OtpkSummary:
    devices_active: int
    below_critical: int
    below_warning: int
    min_remaining: int | None


OUTAGE_LOOKBACK = timedelta(hours=1)  # how far back an outage's undelivered messages count


def _host_of(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    from e2ee_ops.adapters.http import host_of

    # libpq also takes the host as a query parameter (a socket directory, say).
    return host_of(url, default=parse_qs(urlsplit(url).query).get("host", ["localhost"])[0])


# Per sort or hash of the toolkit's own session: `abuse top-senders` aggregates a window's
# senders (hundreds of thousands at ten million messages a day), which PostgreSQL's
# default of 4 MB would spill to disk.
WORK_MEM = "64MB"


class OpsDatabase:
    def __init__(
        self,
        url: str | None,
        *,
        password: str | None = None,
        connect_timeout: float = 5.0,
        statement_timeout_ms: int = 5000,
    ) -> None:
        if not url:
            raise ConfigError(
                "no PostgreSQL URL is configured", hint="set postgres.url in the config file"
            )
        self.url = url
        self.password = password
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.host = _host_of(url)

    @contextmanager
    def connect(
        self, *, application_name: str | None = None
    ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        import psycopg

        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(self.connect_timeout)),
            "options": f"-c statement_timeout={self.statement_timeout_ms} -c work_mem={WORK_MEM}",
            "autocommit": True,
            "application_name": (application_name or "e2ee-ops")[:63],
        }
        if self.password:
            kwargs["password"] = self.password
        try:
            conn = psycopg.connect(self.url, **kwargs)
        except psycopg.OperationalError as exc:
            raise UnreachableError(
                f"could not connect to PostgreSQL at {self.host}: {_first_line(exc)}",
                host=self.host,
                hint="check postgres.url, the network and the server",
            ) from None
        try:
            yield conn
        except psycopg.errors.QueryCanceled:
            raise TimedOutError(
                f"a query on PostgreSQL at {self.host} ran past {self.statement_timeout_ms} ms",
                hint="raise postgres.statement_timeout_ms or check the server's load",
            ) from None
        except psycopg.errors.UndefinedTable as exc:
            raise E2eeOpsError(
                f"PostgreSQL at {self.host} lacks a table the service needs: {_first_line(exc)}",
                hint="check that postgres.url names the service's database and its migrations ran",
            ) from None
        except psycopg.OperationalError as exc:
            raise UnreachableError(
                f"lost PostgreSQL at {self.host}: {_first_line(exc)}", host=self.host
            ) from None
        finally:
            conn.close()

    @contextmanager
    def advisory_lock(
        self,
        name: str,
        *,
        holder: str,
        wait_seconds: float,
        on_wait: Callable[[str], None] = lambda _m: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """Hold the session advisory lock `name` for the block, on its own connection.

        The connection's application_name is `holder`, so a second run (on any host)
        can say who holds the lock; the lock goes with the session if this process dies.
        """
        key = advisory_key(name)
        with self.connect(application_name=holder) as conn:

            def try_once() -> bool:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                return bool(row and row[0])

            def current_holder() -> str:
                row = conn.execute(LOCK_HOLDER_SQL, (key >> 32, key & 0xFFFFFFFF)).fetchone()
                return f"{row[0]} ({row[1] or 'local'})" if row else ""

            wait_for_lock(
                try_once,
                what=f"the {name!r} lock on PostgreSQL at {self.host}",
                holder=current_holder,
                wait_seconds=wait_seconds,
                on_wait=on_wait,
                sleep=sleep,
            )
            try:
                yield conn
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def server_version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def undelivered_recent(self, minutes: float) -> int:
        """The runbook's "Redis lag" query, counting messages rather than envelope rows."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT COUNT(DISTINCT m.id) FROM dm_messages m "
                "LEFT JOIN dm_delivery d ON m.id = d.message_id "
                "WHERE d.delivered_at IS NULL "
                "AND m.created_at > NOW() - make_interval(secs => %s)",
                (minutes * 60.0,),
            ).fetchone()
        return int(row[0]) if row else 0

    def delivery_window(
        self, start: datetime, end: datetime, *, list_limit: int = 50
    ) -> DeliveryWindow:
        with self.connect() as conn:
            totals = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE pending = 0) FROM ("
                " SELECT m.id, count(d.message_id) FILTER (WHERE d.delivered_at IS NULL)"
                "   AS pending"
                " FROM dm_messages m LEFT JOIN dm_delivery d ON d.message_id = m.id"
                " WHERE m.created_at >= %s AND m.created_at < %s GROUP BY m.id) per_message",
                (start, end),
            ).fetchone()
            rows = conn.execute(
                "SELECT m.id, m.created_at, count(*) FROM dm_messages m "
                "JOIN dm_delivery d ON d.message_id = m.id "
                "WHERE m.created_at >= %s AND m.created_at < %s AND d.delivered_at IS NULL "
                "GROUP BY m.id, m.created_at ORDER BY m.id LIMIT %s",
                (start, end, list_limit),
            ).fetchall()
        stored, delivered = (int(totals[0]), int(totals[1])) if totals else (0, 0)
        return DeliveryWindow(
            start=start,
            end=end,
            stored=stored,
            delivered=delivered,
            undelivered=[UndeliveredMessage(int(r[0]), r[1], int(r[2])) for r in rows],
        )

    def oldest_undelivered(self, now: datetime) -> datetime | None:
        """When the oldest message of the hour before `now` that is still undelivered was
        stored, or None: messages stored while Redis was down are the ones not pushed, so
        this dates an outage's start at the latest."""
        window = self.delivery_window(
            now - OUTAGE_LOOKBACK, now + timedelta(minutes=1), list_limit=1
        )
        return window.undelivered[0].created_at if window.undelivered else None

    def now(self) -> datetime:
        """The database's clock: outage windows are measured against created_at."""
        with self.connect() as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        value: datetime = row[0]
        return value

    def otpk_summary(self, *, critical: int, warning: int) -> OtpkSummary:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE kb.prekeys_remaining < %s),"
                " count(*) FILTER (WHERE kb.prekeys_remaining < %s), min(kb.prekeys_remaining)"
                " FROM e2ee_devices d JOIN e2ee_key_bundles kb ON d.device_id = kb.device_id"
                " WHERE d.status = 'active'",
                (critical, warning),
            ).fetchone()
        assert row is not None
        return OtpkSummary(int(row[0]), int(row[1]), int(row[2]), row[3])


# Who holds an advisory lock: the holder's application_name and address.
LOCK_HOLDER_SQL = (
    "SELECT a.application_name, host(a.client_addr) FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1"
)


def advisory_key(name: str) -> int:
    """The advisory lock key of `name`: stable across hosts and versions."""
    return zlib.crc32(f"e2ee-ops {name}".encode())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
