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
from datetime import datetime
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
    # Pending devices seen after it was stored: connected or polled (last_seen_at), or
    # acknowledged a later message.
    devices_seen_since: int

    @property
    def deliverable(self) -> bool:
        """A device it waits for has connected since: it could have been delivered."""
        return self.devices_seen_since > 0


@dataclass(frozen=True)
class DeliveryWindow:
    """Messages stored in [start, end) and how many reached every recipient device.

    Counts are of messages; `pending_rows` is what the runbook's "Redis lag" query
    counts instead: message-device rows not yet delivered.
    """

    start: datetime | None
    end: datetime | None
    stored: int
    delivered: int
    deliverable: int  # not delivered, though a recipient device has connected since
    pending_rows: int
    undelivered: list[UndeliveredMessage]

    @property
    def all_delivered(self) -> bool:
        return self.stored == self.delivered

    @property
    def waiting_offline(self) -> int:
        """Not delivered, and no device it waits for has been seen since it was stored."""
        return self.stored - self.delivered - self.deliverable


@dataclass(frozen=True)
class OtpkSummary:
    devices_active: int
    below_critical: int
    below_warning: int
    min_remaining: int | None


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

    def recent_window(self, minutes: float, *, list_limit: int = 50) -> DeliveryWindow:
        """Stored vs delivered for messages of the last `minutes` (the database's clock),
        the window of the runbook's "Redis lag" query."""
        return self._window(
            "m.created_at > NOW() - make_interval(secs => %s)", (minutes * 60.0,), list_limit
        )

    def delivery_window(
        self, start: datetime, end: datetime, *, list_limit: int = 50
    ) -> DeliveryWindow:
        window = self._window("m.created_at >= %s AND m.created_at < %s", (start, end), list_limit)
        return DeliveryWindow(
            start,
            end,
            window.stored,
            window.delivered,
            window.deliverable,
            window.pending_rows,
            window.undelivered,
        )

    def _window(self, where: str, params: tuple[Any, ...], list_limit: int) -> DeliveryWindow:
        per_message = (
            "SELECT m.id, m.created_at,"
            " count(d.message_id) FILTER (WHERE d.delivered_at IS NULL) AS pending,"
            " count(d.message_id) FILTER (WHERE d.delivered_at IS NULL"
            "   AND (dev.last_seen_at > m.created_at OR EXISTS ("
            "     SELECT 1 FROM dm_delivery later WHERE later.device_id = d.device_id"
            "     AND later.delivered_at > m.created_at))) AS seen_since"
            " FROM dm_messages m LEFT JOIN dm_delivery d ON d.message_id = m.id"
            " LEFT JOIN e2ee_devices dev ON dev.device_id = d.device_id"
            f" WHERE {where} GROUP BY m.id, m.created_at"
        )
        with self.connect() as conn, conn.transaction():
            # One snapshot for both statements: a message stored in between must not be
            # listed undelivered by one and missing from the other's totals.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            totals = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE pending = 0),"
                " count(*) FILTER (WHERE seen_since > 0), coalesce(sum(pending), 0)"
                f" FROM ({per_message}) per_message",
                params,
            ).fetchone()
            rows = conn.execute(
                f"SELECT id, created_at, pending, seen_since FROM ({per_message}) per_message"
                " WHERE pending > 0 ORDER BY seen_since > 0 DESC, id LIMIT %s",
                (*params, list_limit),
            ).fetchall()
        assert totals is not None
        return DeliveryWindow(
            start=None,
            end=None,
            stored=int(totals[0]),
            delivered=int(totals[1]),
            deliverable=int(totals[2]),
            pending_rows=int(totals[3]),
            undelivered=[UndeliveredMessage(int(r[0]), r[1], int(r[2]), int(r[3])) for r in rows],
        )

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
