"""The operator's PostgreSQL adapter against a real server: how it connects, what each of
its errors says, the advisory lock, and the exact figures of its metadata queries on rows
placed around a pinned "now" read from the database."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import pytest

from e2ee_ops.adapters.postgres import (
    DeliveryWindow,
    OpsDatabase,
    UndeliveredMessage,
    _host_of,
    advisory_key,
)
from e2ee_ops.dburl import libpq_url
from e2ee_ops.errors import ConfigError, E2eeOpsError, TimedOutError, UnreachableError
from e2ee_ops.reference.bootstrap import migrate

NOWHERE = "postgresql://ops@127.0.0.1:9/e2ee"  # nothing listens on port 9


@dataclass
class Seeded:
    url: str
    base: datetime  # the database's now() when the rows were written
    ids: dict[str, int]  # message name -> id
    created: dict[str, datetime]


# Messages (name, minutes before base, [(device, delivered minutes before base or None)]).
# Devices: `seen` was last seen 1 minute ago, `off` 2 hours ago.
MESSAGES = [
    ("m1", 30, [("seen", 29)]),  # delivered
    ("m2", 20, [("seen", None), ("off", None)]),  # waits for a device seen since
    ("m3", 10, [("off", None)]),  # waits for a device not seen since
    ("m4", 180, [("off", None)]),  # outside the last hour
    ("m5", 50, [("off", None)]),  # `off` acknowledged a later message (m6) since
    ("m6", 40, [("off", 35)]),  # delivered
    ("m7", 5, []),  # no recipient device: nothing to wait for
]


@pytest.fixture(scope="module")
def seeded(make_database: Callable[[str], str]) -> Seeded:
    url = make_database(f"ops_{uuid.uuid4().hex[:10]}")
    migrate(url)
    with psycopg.connect(libpq_url(url)) as conn:
        base = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]

        def ago(minutes: float) -> datetime:
            return base - timedelta(minutes=minutes)  # type: ignore[no-any-return]

        def user(name: str) -> int:
            row = conn.execute(
                "INSERT INTO users (username) VALUES (%s) RETURNING account_id", (name,)
            ).fetchone()
            return int(row[0])  # type: ignore[index]

        sender, recipient = user("sender"), user("recipient")

        def device(owner: int, status: str, seen: datetime, prekeys: int) -> str:
            row = conn.execute(
                "INSERT INTO e2ee_devices (user_id, device_name, identity_key, status, "
                "last_seen_at) VALUES (%s, 'd', '\\x00', %s, %s) RETURNING device_id",
                (owner, status, seen),
            ).fetchone()
            conn.execute(
                "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, "
                "signed_prekey_public, signed_prekey_signature, prekeys_remaining) "
                "VALUES (%s, 1, '\\x00', '\\x00', %s)",
                (row[0], prekeys),  # type: ignore[index]
            )
            return str(row[0])  # type: ignore[index]

        devices = {
            "seen": device(recipient, "active", ago(1), 3),
            "off": device(recipient, "active", ago(120), 7),
            "own": device(sender, "active", ago(1), 5),
        }
        device(recipient, "revoked", ago(1), 0)
        conv = conn.execute(
            "INSERT INTO dm_conversations (pair_key, created_by) VALUES ('p', %s) "
            "RETURNING conversation_id",
            (sender,),
        ).fetchone()[0]  # type: ignore[index]
        ids, created = {}, {}
        for name, minutes, deliveries in MESSAGES:
            row = conn.execute(
                "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
                "client_message_id, created_at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (conv, sender, devices["own"], name, ago(minutes)),
            ).fetchone()
            ids[name], created[name] = int(row[0]), ago(minutes)  # type: ignore[index]
            for dev, delivered in deliveries:
                conn.execute(
                    "INSERT INTO dm_delivery (message_id, device_id, recipient_user_id, "
                    "delivered_at) VALUES (%s, %s, %s, %s)",
                    (
                        ids[name],
                        devices[dev],
                        recipient,
                        None if delivered is None else ago(delivered),
                    ),
                )
    return Seeded(url, base, ids, created)


def pending(s: Seeded, name: str, devices: int, seen_since: int) -> UndeliveredMessage:
    return UndeliveredMessage(s.ids[name], s.created[name], devices, seen_since)


# ---- connecting ----------------------------------------------------------------------------


def test_a_connection_has_the_timeouts_work_mem_and_application_name(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url, connect_timeout=2.4, statement_timeout_ms=1234)
    with db.connect(application_name="x" * 70) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
        assert conn.execute("SHOW work_mem").fetchone() == ("64MB",)
        assert conn.execute("SHOW application_name").fetchone() == ("x" * 63,)
        assert conn.autocommit is True
        assert "connect_timeout=2" in conn.info.dsn.split()
    assert conn.closed
    with OpsDatabase(seeded.url, connect_timeout=0.2).connect() as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("e2ee-ops",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert "connect_timeout=1" in conn.info.dsn.split()
    with OpsDatabase(seeded.url).connect() as conn:
        assert "connect_timeout=5" in conn.info.dsn.split()


def test_no_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        OpsDatabase(None)
    assert caught.value.message == "no PostgreSQL URL is configured"
    assert caught.value.hint == "set postgres.url in the config file"


def test_the_host_named_in_messages() -> None:
    assert _host_of("postgresql://u@/db?host=/run/pg") == "/run/pg"
    assert _host_of("postgresql://u@db.example:5432/x") == "db.example:5432"
    assert _host_of("postgresql:///x") == "localhost"
    assert OpsDatabase("postgresql://u@db.example/x").host == "db.example"


def test_an_unreachable_server_is_one_sentence() -> None:
    with pytest.raises(UnreachableError) as caught, OpsDatabase(NOWHERE).connect():
        pass
    assert caught.value.message.startswith(
        "could not connect to PostgreSQL at 127.0.0.1:9: connection "
    )
    assert "\n" not in caught.value.message
    assert caught.value.host == "127.0.0.1:9"
    assert caught.value.hint == "check postgres.url, the network and the server"


def test_a_query_past_the_statement_timeout_is_a_timeout(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url, statement_timeout_ms=50)
    with pytest.raises(TimedOutError) as caught, db.connect() as conn:
        conn.execute("SELECT pg_sleep(5)")
    assert caught.value.message == f"a query on PostgreSQL at {db.host} ran past 50 ms"
    assert caught.value.hint == "raise postgres.statement_timeout_ms or check the server's load"


def test_a_missing_table_says_the_migrations_may_not_have_run(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url)
    with pytest.raises(E2eeOpsError) as caught, db.connect() as conn:
        conn.execute("SELECT 1 FROM no_such_table")
    assert caught.value.message == (
        f"PostgreSQL at {db.host} lacks a table the service needs: "
        'relation "no_such_table" does not exist'
    )
    assert caught.value.hint == (
        "check that postgres.url names the service's database and its migrations ran"
    )


def test_a_connection_lost_midway_is_unreachable(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url)
    with pytest.raises(UnreachableError) as caught, db.connect() as conn:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert caught.value.message.startswith(f"lost PostgreSQL at {db.host}: ")
    assert "\n" not in caught.value.message
    assert caught.value.host == db.host


# ---- the advisory lock ---------------------------------------------------------------------


def test_the_lock_key_is_stable() -> None:
    assert advisory_key("act") == zlib.crc32(b"e2ee-ops act")
    assert advisory_key("act") == 3227155272


def test_a_held_lock_names_its_holder_and_is_released_after(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url)
    told: list[str] = []
    with db.advisory_lock("act", holder="cron@host-a", wait_seconds=5) as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("cron@host-a",)
        with (
            pytest.raises(TimedOutError) as caught,
            db.advisory_lock(
                "act", holder="me", wait_seconds=0.3, on_wait=told.append, sleep=lambda _s: None
            ),
        ):
            pass
        where = f"the 'act' lock on PostgreSQL at {db.host}"
        holder = caught.value.message.removeprefix(f"{where} is held by cron@host-a (")
        assert holder.split(")")[0] in ("local", "127.0.0.1", "::1")
        assert caught.value.message.endswith(") and was not released within 0.3 s")
        assert told == [f"{where} is held by cron@host-a ({holder.split(')')[0]}); waiting"]
        with db.advisory_lock("other", holder="me", wait_seconds=0):
            pass  # another name is another lock
    with db.advisory_lock("act", holder="me", wait_seconds=0):
        pass


def test_the_lock_goes_when_the_block_raises(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url)
    with pytest.raises(RuntimeError), db.advisory_lock("act", holder="a", wait_seconds=0):
        raise RuntimeError("stop")
    with psycopg.connect(libpq_url(seeded.url), autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key("act"),))
        assert got.fetchone() == (True,)


# ---- metadata queries ----------------------------------------------------------------------


def test_the_server_version_and_clock(seeded: Seeded) -> None:
    db = OpsDatabase(seeded.url)
    with psycopg.connect(libpq_url(seeded.url)) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        before = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        assert db.server_version() == version
        now = db.now()
        after = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    assert before <= now <= after
    assert now.tzinfo is not None


def test_prekey_pools_of_active_devices(seeded: Seeded) -> None:
    summary = OpsDatabase(seeded.url).otpk_summary(critical=5, warning=10)
    assert (summary.devices_active, summary.below_critical, summary.below_warning) == (3, 1, 3)
    assert summary.min_remaining == 3
    strict = OpsDatabase(seeded.url).otpk_summary(critical=3, warning=5)
    assert (strict.below_critical, strict.below_warning) == (0, 1)


def test_the_last_hour_counts_messages_and_lists_the_deliverable_first(seeded: Seeded) -> None:
    window = OpsDatabase(seeded.url).recent_window(60.0 + 1.0 / 60)
    assert (window.start, window.end) == (None, None)
    assert (window.stored, window.delivered, window.deliverable, window.pending_rows) == (
        6,
        3,
        2,
        4,
    )
    assert window.undelivered == [
        pending(seeded, "m2", 2, 1),
        pending(seeded, "m5", 1, 1),
        pending(seeded, "m3", 1, 0),
    ]
    assert window.waiting_offline == 1 and window.all_delivered is False
    assert [m.deliverable for m in window.undelivered] == [True, True, False]

    short = OpsDatabase(seeded.url).recent_window(60.0 + 1.0 / 60, list_limit=1)
    assert short.undelivered == [pending(seeded, "m2", 2, 1)]
    assert short.stored == 6


def test_a_window_includes_its_start_and_excludes_its_end(seeded: Seeded) -> None:
    start, end = seeded.created["m5"], seeded.created["m2"]
    window = OpsDatabase(seeded.url).delivery_window(start, end)
    assert window == DeliveryWindow(
        start=start,
        end=end,
        stored=3,
        delivered=2,
        deliverable=1,
        pending_rows=1,
        undelivered=[pending(seeded, "m5", 1, 1)],
    )
    limited = OpsDatabase(seeded.url).delivery_window(
        start, end + timedelta(minutes=1), list_limit=1
    )
    assert (limited.stored, limited.undelivered) == (4, [pending(seeded, "m2", 2, 1)])


def test_an_empty_window_is_all_delivered(seeded: Seeded) -> None:
    end = seeded.base - timedelta(days=1)
    window = OpsDatabase(seeded.url).delivery_window(end - timedelta(hours=1), end)
    assert (window.stored, window.delivered, window.pending_rows, window.undelivered) == (
        0,
        0,
        0,
        [],
    )
    assert window.all_delivered is True and window.waiting_offline == 0
