"""The runbook's SQL, copied byte for byte into tests/data/runbook_queries.sql, runs
unchanged against the reference schema, and every statement of it is run here.
"""

from __future__ import annotations

import re
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from e2ee_ops.dburl import libpq_url

QUERIES_FILE = Path(__file__).parents[2] / "data" / "runbook_queries.sql"
_MARK = re.compile(r"^-- runbook: (.+)$", re.M)


def _statements(sql: str) -> list[str]:
    """Statements of a SQL block, each with its leading comment, dedented."""
    parts = re.split(r"\n\s*\n", textwrap.dedent(sql).strip())
    return [p.strip() for p in parts if p.strip()]


def runbook_blocks() -> dict[str, list[str]]:
    """Each runbook ```sql block (by its section) as its statements."""
    text = QUERIES_FILE.read_text(encoding="utf-8")
    marks = list(_MARK.finditer(text))
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return {
        m.group(1): _statements(text[m.end() + 1 : end]) for m, end in zip(marks, ends, strict=True)
    }


_BLOCKS = runbook_blocks()
[STUCK_DEVICES_SQL] = _BLOCKS[
    "Stuck Device Remediation > Remediation Steps > 1. Identify Affected Devices"
]
[ABUSIVE_USERS_SQL] = _BLOCKS["Abuse Burst Response > Immediate Actions > 1. Identify Abusive User"]
LOW_OTPK_USERS_SQL, HIGH_RATE_SQL, UNDELIVERED_SQL = _BLOCKS["Useful Commands > Database Queries"]

RUNBOOK_QUERIES = (
    STUCK_DEVICES_SQL,
    ABUSIVE_USERS_SQL,
    LOW_OTPK_USERS_SQL,
    HIGH_RATE_SQL,
    UNDELIVERED_SQL,
)


def test_every_runbook_statement_is_one_of_the_queries_run_here() -> None:
    assert list(_BLOCKS) == [
        "Stuck Device Remediation > Remediation Steps > 1. Identify Affected Devices",
        "Abuse Burst Response > Immediate Actions > 1. Identify Abusive User",
        "Useful Commands > Database Queries",
    ]
    in_file = [s for statements in _BLOCKS.values() for s in statements]
    assert in_file == list(RUNBOOK_QUERIES)
    assert [q.splitlines()[0] for q in RUNBOOK_QUERIES] == [
        "-- Query devices with low OTPK pools",
        "-- Find users with high message rate",
        "-- Find devices with low OTPK pools",
        "-- Find users with high message rates",
        "-- Check Redis lag (if stored in DB)",
    ]
    assert all(q.endswith(";") for q in RUNBOOK_QUERIES)


@dataclass
class Seeded:
    usernames: dict[int, str]
    alice: int
    bob: int
    carol: int
    dave: int
    devices: dict[str, tuple[str, int]]  # name -> (device_id, owner)
    undelivered_envelopes_5m: int


def _backdate_message(url: str, message_id: int, interval: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "UPDATE dm_messages SET created_at = now() - %s::interval WHERE id = %s",
            (interval, message_id),
        )


@pytest.fixture
def seeded(users, database_url) -> Seeded:  # type: ignore[no-untyped-def]
    """Real data through the API: prekey pools shaped by claims, sends, acks, a revocation."""
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    carol_id, carol = users.new("carol")
    dave_id, dave = users.new("dave")

    devices: dict[str, tuple[str, int]] = {}

    def register(client, owner: int, name: str, prekeys: int, claims: int) -> str:  # type: ignore[no-untyped-def]
        device_id = client.register_device(name, prekeys=prekeys)["device_id"]
        for _ in range(claims):
            dave.claim(device_id)
        devices[name] = (device_id, owner)
        return device_id

    a_phone = register(alice, alice_id, "alice-phone", 8, 6)  # 2 left: stuck
    register(alice, alice_id, "alice-laptop", 12, 2)  # 10 left: fine
    b_phone = register(bob, bob_id, "bob-phone", 5, 1)  # 4 left: stuck
    b_tablet = register(bob, bob_id, "bob-tablet", 7, 2)  # exactly 5: not below 5
    c_phone = register(carol, carol_id, "carol-phone", 3, 3)  # 0 left: stuck (exhausted)
    d_old = register(dave, dave_id, "dave-old", 2, 2)  # 0 left but revoked: excluded
    dave.revoke_device(d_old)
    d_phone = register(dave, dave_id, "dave-phone", 20, 0)

    ab = alice.open_conversation(bob_id)
    ac = alice.open_conversation(carol_id)
    cd = carol.open_conversation(dave_id)
    bd = bob.open_conversation(dave_id)

    # alice: 4 sends to bob (2 devices each) + 1 to carol, one of them 2 hours old.
    to_bob = [alice.send(ab, a_phone, bob_id)["message_id"] for _ in range(4)]
    alice.send(ac, a_phone, carol_id)
    _backdate_message(database_url, to_bob[0], "2 hours")
    # carol: 3 sends to dave, one 10 minutes old (in the hour, not in the last 5 minutes).
    to_dave = [carol.send(cd, c_phone, dave_id)["message_id"] for _ in range(3)]
    _backdate_message(database_url, to_dave[0], "10 minutes")
    # bob: 1 send to dave.
    bob.send(bd, b_phone, dave_id)

    # Acknowledgements: bob's phone acks two of alice's recent messages, bob's tablet one;
    # dave acks carol's newest.
    assert bob.ack(b_phone, to_bob[1:3]) == 2
    assert bob.ack(b_tablet, to_bob[1:2]) == 1
    assert dave.ack(d_phone, to_dave[2:3]) == 1

    # Unacknowledged (message, device) pairs of the last 5 minutes:
    #   alice->bob recent (3 messages x 2 devices = 6) - 3 acks = 3
    #   alice->carol 1, carol->dave recent 2 - 1 ack = 1, bob->dave 1
    undelivered = 3 + 1 + 1 + 1
    return Seeded(
        usernames={alice_id: "alice", bob_id: "bob", carol_id: "carol", dave_id: "dave"},
        alice=alice_id,
        bob=bob_id,
        carol=carol_id,
        dave=dave_id,
        devices=devices,
        undelivered_envelopes_5m=undelivered,
    )


def _run(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(sql).fetchall()


def _stuck(seeded: Seeded) -> dict[str, tuple[str, int, int]]:
    expected = {"alice-phone": 2, "bob-phone": 4, "carol-phone": 0}
    return {
        seeded.devices[name][0]: (name, seeded.devices[name][1], left)
        for name, left in expected.items()
    }


def test_stuck_devices_query(seeded: Seeded, database_url: str) -> None:
    rows = _run(database_url, STUCK_DEVICES_SQL)
    got = {str(r[0]): (r[2], r[1], r[3]) for r in rows}
    assert len(rows) == 3
    assert got == _stuck(seeded)
    assert all(isinstance(r[0], uuid.UUID) for r in rows)


def test_stuck_devices_with_usernames_query(seeded: Seeded, database_url: str) -> None:
    rows = _run(database_url, LOW_OTPK_USERS_SQL)
    expected = {
        device_id: (seeded.usernames[owner], left)
        for device_id, (_, owner, left) in _stuck(seeded).items()
    }
    assert len(rows) == 3
    assert {str(r[0]): (r[1], r[2]) for r in rows} == expected


def test_stuck_devices_query_follows_refill(users, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """After the device uploads new prekeys it leaves the runbook's list."""
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone", prekeys=1)["device_id"]
    assert [str(r[0]) for r in _run(database_url, STUCK_DEVICES_SQL)] == [device_id]
    assert alice.upload_prekeys(device_id, 10) == 11
    assert _run(database_url, STUCK_DEVICES_SQL) == []
    assert _run(database_url, LOW_OTPK_USERS_SQL) == []


@pytest.mark.parametrize("sql", [ABUSIVE_USERS_SQL, HIGH_RATE_SQL], ids=["abuse", "useful"])
def test_high_message_rate_query(seeded: Seeded, database_url: str, sql: str) -> None:
    rows = _run(database_url, sql)
    # alice sent 5 (one of them 2 hours ago), carol 3, bob 1, dave none.
    assert rows == [(seeded.alice, 4), (seeded.carol, 3), (seeded.bob, 1)]


def test_undelivered_query(seeded: Seeded, database_url: str) -> None:
    rows = _run(database_url, UNDELIVERED_SQL)
    # The runbook's LEFT JOIN counts one row per unacknowledged (message, device) pair.
    assert rows == [(seeded.undelivered_envelopes_5m,)]
    with psycopg.connect(libpq_url(database_url)) as conn:
        pairs = conn.execute(
            "SELECT count(*) FROM dm_delivery d JOIN dm_messages m ON m.id = d.message_id "
            "WHERE d.delivered_at IS NULL AND m.created_at > now() - interval '5 minutes'"
        ).fetchone()
    assert pairs == (seeded.undelivered_envelopes_5m,)


def test_undelivered_query_drops_to_zero_after_acks(users, database_url: str) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    a_dev = alice.register_device("alice-phone")["device_id"]
    b_dev = bob.register_device("bob-phone")["device_id"]
    conv = alice.open_conversation(bob_id)
    sent = [alice.send(conv, a_dev, bob_id)["message_id"] for _ in range(3)]
    assert _run(database_url, UNDELIVERED_SQL) == [(3,)]
    polled = [m["message_id"] for m in bob.poll(b_dev)["messages"]]
    assert polled == sent
    assert bob.ack(b_dev, polled) == 3
    assert _run(database_url, UNDELIVERED_SQL) == [(0,)]


def test_queries_on_an_empty_database(clean_db: str) -> None:
    assert _run(clean_db, STUCK_DEVICES_SQL) == []
    assert _run(clean_db, LOW_OTPK_USERS_SQL) == []
    assert _run(clean_db, ABUSIVE_USERS_SQL) == []
    assert _run(clean_db, HIGH_RATE_SQL) == []
    assert _run(clean_db, UNDELIVERED_SQL) == [(0,)]
