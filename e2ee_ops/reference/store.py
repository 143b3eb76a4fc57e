"""Every SQL statement of the reference server, against PostgreSQL through psycopg 3."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from e2ee_ops.dburl import libpq_url

Row = DictRow


class Conflict(Exception):
    """A 409: the request cannot be served in the resource's current state."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class NotFound(Exception):
    """A 404."""


@dataclass(frozen=True)
class EnvelopeDevice:
    """A device an envelope is addressed to, as a send finds it."""

    user_id: int
    status: str
    bundle_version: int


def envelope_problem(
    devices: dict[uuid.UUID, EnvelopeDevice],
    envelopes: Sequence[tuple[uuid.UUID, int, bytes]],
    recipients: Sequence[int],
) -> NotFound | Conflict | None:
    """Why these envelopes cannot be stored (the first problem, in envelope order):
    a device that is not a recipient's (404), revoked, or on another bundle (409)."""
    for device_id, bundle_version, _ in envelopes:
        found = devices.get(device_id)
        if found is None or found.user_id not in recipients:
            return NotFound(f"device {device_id} is not a recipient device")
        if found.status != "active":
            return Conflict("DEVICE_REVOKED", f"device {device_id} has been revoked")
        if found.bundle_version != bundle_version:
            return Conflict(
                "BUNDLE_STALE", f"device {device_id} has bundle version {found.bundle_version}"
            )
    return None


@dataclass(frozen=True)
class HandOver:
    """What one stream asks for: its device's pending messages after `after`, except
    `exclude` (handed over on this stream already, not yet acknowledged)."""

    device_id: uuid.UUID
    after: int
    exclude: Sequence[int] = ()


@dataclass(frozen=True)
class SignedPrekey:
    key_id: int
    public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class OneTimePrekey:
    key_id: int
    public_key: bytes


class Store:
    def __init__(
        self, database_url: str, *, max_size: int = 10, last_seen_interval: float = 0.0
    ) -> None:
        # Sends and acks write a device's last_seen_at at most once per interval from
        # this process (a hot row otherwise); connecting and polling always write it.
        self.last_seen_interval = last_seen_interval
        self._last_seen_written: dict[uuid.UUID, float] = {}
        self.pool: AsyncConnectionPool[AsyncConnection[Row]] = AsyncConnectionPool(
            libpq_url(database_url),
            connection_class=AsyncConnection[Row],
            min_size=1,
            max_size=max_size,
            open=False,
            # Autocommit: a single statement needs no BEGIN/COMMIT round trips; the
            # operations that must be atomic open `conn.transaction()` themselves.
            kwargs={"row_factory": dict_row, "autocommit": True},
            timeout=10,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    # ---- accounts -------------------------------------------------------------------

    async def create_user(self, username: str, email: str | None) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO users (username, email) VALUES (%s, %s) "
                "ON CONFLICT (username) DO NOTHING RETURNING account_id, username, email",
                (username, email),
            )
            row = await cur.fetchone()
            if row is None:
                raise Conflict("USERNAME_TAKEN", f"username {username!r} is taken")
            return row

    async def get_user(self, account_id: int) -> Row:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT account_id, username, email, blocked_at, block_reason "
                "FROM users WHERE account_id = %s",
                (account_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no user {account_id}")
        return row

    async def add_token(self, user_id: int, token_hash: str, scope: str) -> int:
        async with self.pool.connection() as conn:
            await self._require_user(conn, user_id)
            cur = await conn.execute(
                "INSERT INTO api_tokens (user_id, token_hash, scope) VALUES (%s, %s, %s) "
                "RETURNING token_id",
                (user_id, token_hash, scope),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row["token_id"])

    async def resolve_token(self, token_hash: str) -> Row | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT t.user_id, t.scope, u.blocked_at FROM api_tokens t "
                "JOIN users u ON u.account_id = t.user_id "
                "WHERE t.token_hash = %s AND t.revoked_at IS NULL",
                (token_hash,),
            )
            return await cur.fetchone()

    async def revoke_token(self, token_id: int) -> str:
        """Revoke a token (kept revoked if it was); its hash, to forget it."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) "
                "WHERE token_id = %s RETURNING token_hash",
                (token_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no token {token_id}")
        return str(row["token_hash"])

    async def set_block(self, account_id: int, reason: str | None, by: int | None) -> Row:
        async with self.pool.connection() as conn:
            if reason is None:
                sql = (
                    "UPDATE users SET blocked_at = NULL, block_reason = NULL, blocked_by = NULL "
                    "WHERE account_id = %s RETURNING account_id, blocked_at, block_reason"
                )
                params: tuple[Any, ...] = (account_id,)
            else:
                sql = (
                    "UPDATE users SET blocked_at = COALESCE(blocked_at, now()), "
                    "block_reason = %s, blocked_by = %s "
                    "WHERE account_id = %s RETURNING account_id, blocked_at, block_reason"
                )
                params = (reason, by, account_id)
            cur = await conn.execute(sql, params)
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no user {account_id}")
        return row

    @staticmethod
    async def _require_user(conn: AsyncConnection[Row], user_id: int) -> None:
        cur = await conn.execute("SELECT 1 FROM users WHERE account_id = %s", (user_id,))
        if await cur.fetchone() is None:
            raise NotFound(f"no user {user_id}")

    # ---- devices and keys -----------------------------------------------------------

    async def register_device(
        self,
        user_id: int,
        device_name: str,
        identity_key: bytes,
        signed_prekey: SignedPrekey,
        one_time_prekeys: Sequence[OneTimePrekey],
    ) -> Row:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO e2ee_devices (user_id, device_name, identity_key) "
                "VALUES (%s, %s, %s) RETURNING device_id",
                (user_id, device_name, identity_key),
            )
            row = await cur.fetchone()
            assert row is not None
            device_id = row["device_id"]
            await conn.execute(
                "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, signed_prekey_public,"
                " signed_prekey_signature) VALUES (%s, %s, %s, %s)",
                (
                    device_id,
                    signed_prekey.key_id,
                    signed_prekey.public_key,
                    signed_prekey.signature,
                ),
            )
            remaining = await self._insert_prekeys(conn, device_id, one_time_prekeys)
            return {"device_id": device_id, "bundle_version": 1, "prekeys_remaining": remaining}

    @staticmethod
    async def _insert_prekeys(
        conn: AsyncConnection[Row], device_id: uuid.UUID, keys: Sequence[OneTimePrekey]
    ) -> int:
        # A re-sent key id is ignored; the pool size is recounted, not incremented.
        if keys:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO e2ee_one_time_prekeys (device_id, key_id, public_key) "
                    "VALUES (%s, %s, %s) ON CONFLICT (device_id, key_id) DO NOTHING",
                    [(device_id, k.key_id, k.public_key) for k in keys],
                )
        cur2 = await conn.execute(
            "UPDATE e2ee_key_bundles SET prekeys_remaining = "
            "(SELECT count(*) FROM e2ee_one_time_prekeys WHERE device_id = %s), updated_at = now() "
            "WHERE device_id = %s RETURNING prekeys_remaining",
            (device_id, device_id),
        )
        row = await cur2.fetchone()
        assert row is not None
        return int(row["prekeys_remaining"])

    async def list_devices(self, user_id: int) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.device_id, d.device_name, d.status, d.last_seen_at, d.created_at,"
                " kb.prekeys_remaining, kb.bundle_version, kb.signed_prekey_uploaded_at,"
                " EXTRACT(EPOCH FROM now() - kb.signed_prekey_uploaded_at) / 86400.0"
                "   AS signed_prekey_age_days "
                "FROM e2ee_devices d JOIN e2ee_key_bundles kb ON kb.device_id = d.device_id "
                "WHERE d.user_id = %s ORDER BY d.created_at",
                (user_id,),
            )
            return await cur.fetchall()

    async def owned_device(self, device_id: uuid.UUID, user_id: int) -> Row:
        """The caller's own device; NotFound for anyone else's, so ids do not leak."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT device_id, user_id, status, identity_key FROM e2ee_devices "
                "WHERE device_id = %s AND user_id = %s",
                (device_id, user_id),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return row

    async def streams_allowed(
        self, streams: set[tuple[uuid.UUID, str]]
    ) -> set[tuple[uuid.UUID, str]]:
        """Of these (device, token hash) pairs, those whose token is live, its user not
        blocked, and the device active and the user's: one query for all."""
        pairs = sorted(streams)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT p.device_id, p.token_hash"
                " FROM unnest(%s::uuid[], %s::text[]) AS p(device_id, token_hash)"
                " JOIN api_tokens t ON t.token_hash = p.token_hash AND t.revoked_at IS NULL"
                " JOIN users u ON u.account_id = t.user_id AND u.blocked_at IS NULL"
                " JOIN e2ee_devices d ON d.device_id = p.device_id AND d.user_id = t.user_id"
                " AND d.status = 'active'",
                ([d for d, _ in pairs], [t for _, t in pairs]),
            )
            return {(r["device_id"], r["token_hash"]) for r in await cur.fetchall()}

    async def touch_device(self, device_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            await self._write_last_seen(conn, device_id)

    def _last_seen_due(self, device_id: uuid.UUID) -> bool:
        written = self._last_seen_written.get(device_id)
        return written is None or time.monotonic() - written >= self.last_seen_interval

    async def _write_last_seen(self, conn: AsyncConnection[Row], device_id: uuid.UUID) -> None:
        await conn.execute(
            "UPDATE e2ee_devices SET last_seen_at = now() WHERE device_id = %s", (device_id,)
        )
        self._note_last_seen(device_id)

    def _note_last_seen(self, device_id: uuid.UUID) -> None:
        if len(self._last_seen_written) >= 100_000:
            self._last_seen_written.clear()
        self._last_seen_written[device_id] = time.monotonic()

    async def add_prekeys(self, device_id: uuid.UUID, keys: Sequence[OneTimePrekey]) -> int:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT 1 FROM e2ee_key_bundles WHERE device_id = %s FOR UPDATE", (device_id,)
            )
            remaining = await self._insert_prekeys(conn, device_id, keys)
            await conn.execute(
                "UPDATE e2ee_devices SET last_seen_at = now() WHERE device_id = %s", (device_id,)
            )
            return remaining

    @staticmethod
    async def _replace_signed_prekey(
        conn: AsyncConnection[Row], device_id: uuid.UUID, spk: SignedPrekey
    ) -> int:
        """New signed prekey, new bundle version: envelopes to the old one become stale."""
        cur = await conn.execute(
            "UPDATE e2ee_key_bundles SET signed_prekey_id = %s, signed_prekey_public = %s,"
            " signed_prekey_signature = %s, signed_prekey_uploaded_at = now(),"
            " bundle_version = bundle_version + 1, updated_at = now() "
            "WHERE device_id = %s RETURNING bundle_version",
            (spk.key_id, spk.public_key, spk.signature, device_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return int(row["bundle_version"])

    async def rotate_signed_prekey(self, device_id: uuid.UUID, spk: SignedPrekey) -> int:
        async with self.pool.connection() as conn:
            return await self._replace_signed_prekey(conn, device_id, spk)

    async def change_identity(
        self,
        device_id: uuid.UUID,
        user_id: int,
        old_fingerprint: str,
        new_fingerprint: str,
        identity_key: bytes,
        spk: SignedPrekey,
    ) -> int:
        """Replace the identity key; the old one-time prekeys belonged to the old identity."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE e2ee_devices SET identity_key = %s, last_seen_at = now() "
                "WHERE device_id = %s",
                (identity_key, device_id),
            )
            await conn.execute(
                "DELETE FROM e2ee_one_time_prekeys WHERE device_id = %s", (device_id,)
            )
            await conn.execute(
                "UPDATE e2ee_key_bundles SET prekeys_remaining = 0 WHERE device_id = %s",
                (device_id,),
            )
            version = await self._replace_signed_prekey(conn, device_id, spk)
            await conn.execute(
                "INSERT INTO e2ee_identity_events (user_id, device_id, old_fingerprint,"
                " new_fingerprint) VALUES (%s, %s, %s, %s)",
                (user_id, device_id, old_fingerprint, new_fingerprint),
            )
            return version

    async def bundle_version(self, device_id: uuid.UUID) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT bundle_version FROM e2ee_key_bundles WHERE device_id = %s", (device_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return int(row["bundle_version"])

    async def revoke_device(self, device_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE e2ee_devices SET status = 'revoked',"
                " revoked_at = COALESCE(revoked_at, now()) WHERE device_id = %s",
                (device_id,),
            )
            await conn.execute(
                "DELETE FROM e2ee_one_time_prekeys WHERE device_id = %s", (device_id,)
            )
            await conn.execute(
                "UPDATE e2ee_key_bundles SET prekeys_remaining = 0 WHERE device_id = %s",
                (device_id,),
            )

    async def active_devices_of(self, user_id: int) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.device_id, d.identity_key, kb.bundle_version FROM e2ee_devices d "
                "JOIN e2ee_key_bundles kb ON kb.device_id = d.device_id "
                "WHERE d.user_id = %s AND d.status = 'active' ORDER BY d.created_at",
                (user_id,),
            )
            return await cur.fetchall()

    async def device_owner(self, device_id: uuid.UUID) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id FROM e2ee_devices WHERE device_id = %s", (device_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no device {device_id}")
        return int(row["user_id"])

    async def claim_prekey(self, device_id: uuid.UUID, claimer: int, max_age_days: float) -> Row:
        """Hand out one one-time prekey of the device, never the same one twice.

        The bundle row is locked first, so concurrent claims on one device queue up
        and each sees the pool the previous one left.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT d.user_id, d.status, d.identity_key, kb.bundle_version,"
                " kb.signed_prekey_id, kb.signed_prekey_public, kb.signed_prekey_signature,"
                " kb.signed_prekey_uploaded_at < now() - make_interval(secs => %s) AS stale "
                "FROM e2ee_key_bundles kb JOIN e2ee_devices d ON d.device_id = kb.device_id "
                "WHERE kb.device_id = %s FOR UPDATE OF kb",
                (max_age_days * 86400.0, device_id),
            )
            bundle = await cur.fetchone()
            if bundle is None:
                raise NotFound(f"no device {device_id}")
            if bundle["status"] != "active":
                raise Conflict("DEVICE_REVOKED", "the device has been revoked")
            if bundle["stale"]:
                raise Conflict("BUNDLE_STALE", "the device's signed prekey is too old")
            cur = await conn.execute(
                "DELETE FROM e2ee_one_time_prekeys WHERE id = ("
                " SELECT id FROM e2ee_one_time_prekeys WHERE device_id = %s ORDER BY id LIMIT 1"
                ") RETURNING key_id, public_key",
                (device_id,),
            )
            otpk = await cur.fetchone()
            if otpk is None:
                raise Conflict("PREKEYS_EXHAUSTED", "the device has no one-time prekeys left")
            await conn.execute(
                "UPDATE e2ee_key_bundles SET prekeys_remaining = prekeys_remaining - 1,"
                " updated_at = now() WHERE device_id = %s",
                (device_id,),
            )
            await conn.execute(
                "INSERT INTO e2ee_prekey_claims (device_id, claimed_by_user_id, key_id) "
                "VALUES (%s, %s, %s)",
                (device_id, claimer, otpk["key_id"]),
            )
            return {**bundle, "device_id": device_id, "one_time_prekey": otpk}

    # ---- conversations and messages -------------------------------------------------

    async def open_conversation(self, user_id: int, peer_id: int) -> tuple[Row, bool]:
        low, high = sorted((user_id, peer_id))
        pair_key = f"{low}:{high}"
        async with self.pool.connection() as conn, conn.transaction():
            await self._require_user(conn, peer_id)
            cur = await conn.execute(
                "INSERT INTO dm_conversations (pair_key, created_by) VALUES (%s, %s) "
                "ON CONFLICT (pair_key) DO NOTHING RETURNING conversation_id, created_at",
                (pair_key, user_id),
            )
            row = await cur.fetchone()
            created = row is not None
            if row is None:
                cur = await conn.execute(
                    "SELECT conversation_id, created_at FROM dm_conversations WHERE pair_key = %s",
                    (pair_key,),
                )
                row = await cur.fetchone()
                assert row is not None
            else:
                await conn.execute(
                    "INSERT INTO dm_conversation_members (conversation_id, user_id) "
                    "VALUES (%s, %s), (%s, %s) ON CONFLICT DO NOTHING",
                    (row["conversation_id"], low, row["conversation_id"], high),
                )
            return {**row, "members": [low, high]}, created

    async def list_conversations(self, user_id: int) -> list[Row]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.conversation_id, c.created_at,"
                " array_agg(all_m.user_id ORDER BY all_m.user_id) AS members "
                "FROM dm_conversation_members me "
                "JOIN dm_conversations c ON c.conversation_id = me.conversation_id "
                "JOIN dm_conversation_members all_m ON all_m.conversation_id = c.conversation_id "
                "WHERE me.user_id = %s GROUP BY c.conversation_id ORDER BY c.conversation_id",
                (user_id,),
            )
            return await cur.fetchall()

    async def send_context(
        self,
        conversation_id: int,
        sender: int,
        sender_device_id: uuid.UUID,
        envelope_devices: Sequence[uuid.UUID],
    ) -> Row:
        """In one round trip, what a send must check: the conversation's `members`, whether
        one of them blocked the sender (`blocked`), the status of the sender's own device
        (`device_status`, None when it is not the sender's), and the envelopes' devices
        (`devices`: device id -> `EnvelopeDevice`, for `envelope_problem`).

        The envelopes' devices come in as a scalar subquery: the planner cannot size that
        array, so every call costs the same to it and PostgreSQL keeps one generic plan,
        where an array it can see is planned again on every call (0.20-0.23 ms of backend
        CPU per call against 0.15, measured)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT ARRAY(SELECT user_id FROM dm_conversation_members"
                "   WHERE conversation_id = %(c)s) AS members,"
                " EXISTS (SELECT 1 FROM dm_blocks b JOIN dm_conversation_members m"
                "   ON m.user_id = b.blocker_user_id AND m.conversation_id = %(c)s"
                "   WHERE b.blocked_user_id = %(u)s AND b.blocker_user_id <> %(u)s) AS blocked,"
                " (SELECT status FROM e2ee_devices WHERE device_id = %(d)s AND user_id = %(u)s)"
                "   AS device_status,"
                " env.ids, env.users, env.statuses, env.versions "
                "FROM (SELECT array_agg(d.device_id) AS ids, array_agg(d.user_id) AS users,"
                "   array_agg(d.status) AS statuses, array_agg(kb.bundle_version) AS versions"
                "   FROM e2ee_devices d JOIN e2ee_key_bundles kb ON kb.device_id = d.device_id"
                "   WHERE d.device_id = ANY((SELECT %(e)s::uuid[])::uuid[])) env",
                {"c": conversation_id, "u": sender, "d": sender_device_id, "e": envelope_devices},
            )
            row = await cur.fetchone()
        assert row is not None
        found = zip(
            row.pop("ids") or (),
            row.pop("users") or (),
            row.pop("statuses") or (),
            row.pop("versions") or (),
            strict=True,
        )
        row["devices"] = {d: EnvelopeDevice(int(u), st, int(v)) for d, u, st, v in found}
        return row

    async def blocked_between(self, sender: int, recipients: Sequence[int]) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM dm_blocks WHERE blocked_user_id = %s "
                "AND blocker_user_id = ANY(%s) LIMIT 1",
                (sender, list(recipients)),
            )
            return await cur.fetchone() is not None

    async def set_user_block(self, blocker: int, blocked: int, on: bool) -> None:
        async with self.pool.connection() as conn:
            if on:
                await self._require_user(conn, blocked)
                await conn.execute(
                    "INSERT INTO dm_blocks (blocker_user_id, blocked_user_id) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (blocker, blocked),
                )
            else:
                await conn.execute(
                    "DELETE FROM dm_blocks WHERE blocker_user_id = %s AND blocked_user_id = %s",
                    (blocker, blocked),
                )

    async def store_message(
        self,
        conversation_id: int,
        sender_user_id: int,
        sender_device_id: uuid.UUID,
        client_message_id: str,
        envelopes: Sequence[tuple[uuid.UUID, int, bytes]],
        recipient_of: dict[uuid.UUID, int],
        problem: Exception | None = None,
    ) -> tuple[Row, bool, list[uuid.UUID]]:
        """Store a message, its envelopes and its deliveries in one statement (atomic
        without a transaction's round trips); `recipient_of` gives each envelope's user.

        Returns (message, duplicate, device ids). A repeated client_message_id returns
        the first message: clients retry sends, and a retry must not deliver twice, even
        when the envelopes no longer pass (`problem`, raised only when this is no retry).
        """
        async with self.pool.connection() as conn:
            if problem is None:
                touch = self._last_seen_due(sender_device_id)
                cur = await conn.execute(
                    "WITH m AS (INSERT INTO dm_messages (conversation_id, sender_user_id,"
                    "   sender_device_id, client_message_id) VALUES (%(c)s, %(u)s, %(sd)s, %(cm)s)"
                    "   ON CONFLICT (sender_user_id, client_message_id) DO NOTHING"
                    "   RETURNING id, created_at),"
                    " e AS (INSERT INTO dm_envelopes (message_id, device_id, bundle_version,"
                    "   ciphertext) SELECT m.id, x.d, x.v, x.c FROM m,"
                    "   unnest(%(ds)s::uuid[], %(vs)s::int[], %(cs)s::bytea[]) AS x(d, v, c)),"
                    " dl AS (INSERT INTO dm_delivery (message_id, device_id, recipient_user_id)"
                    "   SELECT m.id, x.d, x.r FROM m,"
                    "   unnest(%(ds)s::uuid[], %(rs)s::bigint[]) AS x(d, r)),"
                    " seen AS (UPDATE e2ee_devices SET last_seen_at = now() FROM m"
                    "   WHERE device_id = %(sd)s AND %(touch)s)"
                    " SELECT id, created_at FROM m",
                    {
                        "c": conversation_id,
                        "u": sender_user_id,
                        "sd": sender_device_id,
                        "cm": client_message_id,
                        "ds": [d for d, _, _ in envelopes],
                        "vs": [v for _, v, _ in envelopes],
                        "cs": [c for _, _, c in envelopes],
                        "rs": [recipient_of[d] for d, _, _ in envelopes],
                        "touch": touch,
                    },
                )
                message = await cur.fetchone()
                if message is not None:
                    if touch:
                        self._note_last_seen(sender_device_id)
                    return message, False, [d for d, _, _ in envelopes]
            cur = await conn.execute(
                "SELECT m.id, m.created_at, array_agg(d.device_id) AS devices "
                "FROM dm_messages m JOIN dm_delivery d ON d.message_id = m.id "
                "WHERE m.sender_user_id = %s AND m.client_message_id = %s GROUP BY m.id",
                (sender_user_id, client_message_id),
            )
            existing = await cur.fetchone()
        if existing is None:
            # Not a retry: the envelopes' problem stands (None only if the first message
            # was deleted in between, which the server never does).
            raise problem or NotFound(f"no message {client_message_id!r}")
        return existing, True, list(existing["devices"])

    async def hand_over_pending(
        self, device_id: uuid.UUID, after: int, limit: int, exclude: Sequence[int] = ()
    ) -> list[Row]:
        """Unacknowledged envelopes of a device after `after`, oldest first, marked as
        handed over (`pushed_at`, first time only) in the same statement: the caller
        sends them to the device now (this server must read them)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH picked AS (SELECT message_id FROM dm_delivery"
                "   WHERE device_id = %(d)s AND delivered_at IS NULL AND message_id > %(after)s"
                "   AND NOT (message_id = ANY(%(exclude)s)) ORDER BY message_id LIMIT %(limit)s),"
                " marked AS (UPDATE dm_delivery dd SET pushed_at = COALESCE(dd.pushed_at, now())"
                "   FROM picked WHERE dd.device_id = %(d)s AND dd.message_id = picked.message_id) "
                "SELECT m.id AS message_id, m.conversation_id, m.sender_user_id,"
                " m.sender_device_id, m.created_at, e.ciphertext "
                "FROM picked JOIN dm_messages m ON m.id = picked.message_id "
                "JOIN dm_envelopes e ON e.message_id = picked.message_id AND e.device_id = %(d)s "
                "ORDER BY m.id",
                {"d": device_id, "after": after, "exclude": list(exclude), "limit": limit},
            )
            return await cur.fetchall()

    async def hand_over_many(self, wanted: Sequence[HandOver], limit: int) -> list[list[Row]]:
        """`hand_over_pending` for several streams in one statement: for each of `wanted`
        (in order) at most `limit` rows of its own device. Two entries of one device
        (two streams of it) each get that device's rows, as two statements would.

        One stream alone gets `hand_over_pending`'s statement: PostgreSQL keeps a generic
        plan for it, while this one is planned again on every call (the planner sizes
        its arrays from their values), which costs more than it saves for one stream."""
        if not wanted:
            return []
        if len(wanted) == 1:
            one = wanted[0]
            return [await self.hand_over_pending(one.device_id, one.after, limit, one.exclude)]
        excluded = [(n, m) for n, w in enumerate(wanted) for m in w.exclude]
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "WITH ex AS (SELECT n, array_agg(id) AS ids"
                "   FROM unnest(%(xn)s::int[], %(xid)s::bigint[]) AS x(n, id) GROUP BY n),"
                " picked AS (SELECT w.n, w.d, p.message_id"
                "   FROM unnest(%(ds)s::uuid[], %(afters)s::bigint[]) WITH ORDINALITY"
                "     AS w(d, after, n)"
                "   LEFT JOIN ex ON ex.n = w.n - 1"
                "   CROSS JOIN LATERAL (SELECT message_id FROM dm_delivery"
                "     WHERE device_id = w.d AND delivered_at IS NULL AND message_id > w.after"
                "     AND NOT (message_id = ANY(COALESCE(ex.ids, '{}')))"
                "     ORDER BY message_id LIMIT %(limit)s) p),"
                " marked AS (UPDATE dm_delivery dd SET pushed_at = COALESCE(dd.pushed_at, now())"
                "   FROM picked WHERE dd.device_id = picked.d"
                "   AND dd.message_id = picked.message_id) "
                "SELECT picked.n - 1 AS n, m.id AS message_id, m.conversation_id,"
                " m.sender_user_id, m.sender_device_id, m.created_at, e.ciphertext "
                "FROM picked JOIN dm_messages m ON m.id = picked.message_id JOIN dm_envelopes e"
                " ON e.message_id = picked.message_id AND e.device_id = picked.d "
                "ORDER BY picked.n, m.id",
                {
                    "ds": [w.device_id for w in wanted],
                    "afters": [w.after for w in wanted],
                    "xn": [n for n, _ in excluded],
                    "xid": [m for _, m in excluded],
                    "limit": limit,
                },
            )
            rows = await cur.fetchall()
        handed: list[list[Row]] = [[] for _ in wanted]
        for row in rows:
            handed[row.pop("n")].append(row)
        return handed

    async def acknowledged_among(
        self, device_id: uuid.UUID, message_ids: Sequence[int]
    ) -> set[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT message_id FROM dm_delivery WHERE device_id = %s "
                "AND message_id = ANY(%s) AND delivered_at IS NOT NULL",
                (device_id, list(message_ids)),
            )
            return {int(r["message_id"]) for r in await cur.fetchall()}

    async def acknowledge(
        self, device_id: uuid.UUID, user_id: int, message_ids: Sequence[int]
    ) -> int:
        """Mark these messages delivered to the user's device; how many were not already.
        NotFound when the device is not the user's."""
        return await self._acknowledge(
            device_id, user_id, "message_id = ANY(%s)", (list(message_ids),)
        )

    async def acknowledge_up_to(self, device_id: uuid.UUID, user_id: int, up_to: int) -> int:
        """Mark delivered the device's messages up to `up_to` that were sent to it no
        later than `up_to` itself: on one stream (or poll answer), in order, they came
        before it, so the client that got `up_to` got them. One sent later (committed
        after a higher id was sent) or not yet is left pending."""
        return await self._acknowledge(
            device_id,
            user_id,
            "message_id <= %s AND pushed_at <= (SELECT pushed_at FROM dm_delivery"
            " WHERE device_id = %s AND message_id = %s)",
            (up_to, device_id, up_to),
        )

    async def _acknowledge(
        self, device_id: uuid.UUID, user_id: int, which: str, params: tuple[Any, ...]
    ) -> int:
        touch = self._last_seen_due(device_id)
        async with self.pool.connection() as conn:
            # The owner check and, when due, last_seen_at ride along; only when nothing
            # was acknowledged is the owner asked on its own, to tell "not yours" (404)
            # from "nothing to acknowledge" (0).
            cur = await conn.execute(
                "WITH seen AS (UPDATE e2ee_devices SET last_seen_at = now()"
                " WHERE device_id = %s AND user_id = %s AND %s) "
                "UPDATE dm_delivery SET delivered_at = now() WHERE device_id = %s"
                f" AND {which} AND delivered_at IS NULL AND EXISTS (SELECT 1 FROM e2ee_devices"
                " WHERE device_id = %s AND user_id = %s)",
                (device_id, user_id, touch, device_id, *params, device_id, user_id),
            )
            count = max(cur.rowcount, 0)
            if count == 0:
                owner = await conn.execute(
                    "SELECT 1 FROM e2ee_devices WHERE device_id = %s AND user_id = %s",
                    (device_id, user_id),
                )
                if await owner.fetchone() is None:
                    raise NotFound(f"no device {device_id}")
            if touch:
                self._note_last_seen(device_id)
            return count

    async def record_rate_limited(self, user_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("INSERT INTO dm_rate_limit_events (user_id) VALUES (%s)", (user_id,))

    # ---- metrics --------------------------------------------------------------------

    # ---- relay outages (each instance's own record) --------------------------------------

    async def record_redis_lost(self, instance_id: str, at: datetime, reason: str) -> None:
        """Open an outage of this instance, unless one is already open (kept from before)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO relay_outages (instance_id, lost_at, reason) VALUES (%s, %s, %s) "
                "ON CONFLICT (instance_id) WHERE regained_at IS NULL DO NOTHING",
                (instance_id, at, reason),
            )

    async def record_redis_regained(self, instance_id: str, at: datetime) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE relay_outages SET regained_at = GREATEST(%s, lost_at) "
                "WHERE instance_id = %s AND regained_at IS NULL",
                (at, instance_id),
            )

    async def relay_outages(self, instance_id: str | None = None, limit: int = 50) -> list[Row]:
        """Per instance (newest first): its open outage's start, and its last completed one."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT i.instance_id, o.lost_at AS unavailable_since,"
                " c.lost_at AS last_lost_at, c.regained_at AS last_regained_at "
                "FROM (SELECT instance_id, max(lost_at) AS latest FROM relay_outages"
                "      WHERE %s::text IS NULL OR instance_id = %s GROUP BY instance_id"
                "      ORDER BY latest DESC LIMIT %s) i "
                "LEFT JOIN relay_outages o"
                " ON o.instance_id = i.instance_id AND o.regained_at IS NULL "
                "LEFT JOIN LATERAL (SELECT lost_at, regained_at FROM relay_outages"
                "  WHERE instance_id = i.instance_id AND regained_at IS NOT NULL"
                "  ORDER BY regained_at DESC LIMIT 1) c ON true "
                "ORDER BY i.latest DESC",
                (instance_id, instance_id, limit),
            )
            return await cur.fetchall()

    async def metrics_snapshot(
        self, *, otpk_critical: int, otpk_warning: int, max_age_days: float, identity_per_day: int
    ) -> Row:
        """Shared, database-derived metrics; aggregates only, bounded whatever the size."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS devices_active,"
                " count(*) FILTER (WHERE kb.prekeys_remaining < %s) AS below_critical,"
                " count(*) FILTER (WHERE kb.prekeys_remaining < %s) AS below_warning,"
                " count(*) FILTER (WHERE kb.prekeys_remaining = 0) AS exhausted,"
                " COALESCE(avg(kb.prekeys_remaining), 0)::float AS average_remaining,"
                " min(kb.prekeys_remaining) AS min_remaining,"
                " COALESCE(max(EXTRACT(EPOCH FROM now() - kb.signed_prekey_uploaded_at)),0)"
                "   / 86400.0 AS spk_max_days,"
                " COALESCE(avg(EXTRACT(EPOCH FROM now() - kb.signed_prekey_uploaded_at)),0)"
                "   / 86400.0 AS spk_avg_days,"
                " count(*) FILTER (WHERE kb.signed_prekey_uploaded_at"
                "   < now() - make_interval(secs => %s)) AS spk_over_max "
                "FROM e2ee_devices d JOIN e2ee_key_bundles kb ON kb.device_id = d.device_id "
                "WHERE d.status = 'active'",
                (otpk_critical, otpk_warning, max_age_days * 86400.0),
            )
            pools = await cur.fetchone()
            cur = await conn.execute(
                "SELECT count(*) AS claims_last_hour FROM e2ee_prekey_claims "
                "WHERE claimed_at > now() - interval '1 hour'"
            )
            claims = await cur.fetchone()
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE created_at > now() - interval '1 minute')"
                "   AS messages_last_minute,"
                " count(*) AS messages_last_hour FROM dm_messages "
                "WHERE created_at > now() - interval '1 hour'"
            )
            messages = await cur.fetchone()
            cur = await conn.execute(
                "SELECT count(DISTINCT m.id) AS undelivered FROM dm_messages m "
                "LEFT JOIN dm_delivery d ON m.id = d.message_id "
                "WHERE d.delivered_at IS NULL AND m.created_at > now() - interval '5 minutes'"
            )
            undelivered = await cur.fetchone()
            cur = await conn.execute(
                "SELECT COALESCE(sum(n), 0)::bigint AS last_24h,"
                " COALESCE(max(n), 0) AS max_per_user,"
                " count(*) FILTER (WHERE n > %s) AS users_over FROM ("
                " SELECT user_id, count(*) AS n FROM e2ee_identity_events"
                " WHERE occurred_at > now() - interval '24 hours' GROUP BY user_id) per_user",
                (identity_per_day,),
            )
            identity = await cur.fetchone()
        assert pools and claims and messages and undelivered and identity
        return {
            "pools": pools,
            "claims_last_hour": int(claims["claims_last_hour"]),
            "messages": messages,
            "undelivered_last_5_minutes": int(undelivered["undelivered"]),
            "identity": identity,
        }


def as_datetime_str(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
