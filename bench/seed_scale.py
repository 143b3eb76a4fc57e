"""Seed production scale into a PostgreSQL database with generate_series (server-side).

Used by bench/operator_queries.py and by tests/integration/devices/test_explain.py.
Shapes: a healthy majority with 20-100 prekeys, ~0.5 % under 10, ~0.3 % stale signed
prekeys, ~0.5 % not seen for 60 days (the rest within 20 days), ~1 % revoked (their
pools emptied, as the service does); messages spread over
the last 24 hours from a skewed set of senders, a few conversations per user, 429 events.
"""

from __future__ import annotations

from typing import Any

SEED_SQL = [
    "INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@example.com' "
    "FROM generate_series(1, %(users)s) g",
    "INSERT INTO e2ee_devices (user_id, device_name, identity_key, last_seen_at, status) "
    "SELECT u.account_id, 'dev-' || g, '\\x00'::bytea, "
    "now() - (CASE WHEN g %% 199 = 0 THEN 60 ELSE g %% 20 END) * interval '1 day', "
    "CASE WHEN g %% 97 = 0 THEN 'revoked' ELSE 'active' END "
    "FROM generate_series(1, %(devices)s) g "
    "JOIN users u ON u.username = 'u' || (1 + g %% %(users)s)",
    "INSERT INTO e2ee_key_bundles (device_id, signed_prekey_id, signed_prekey_public, "
    "signed_prekey_signature, signed_prekey_uploaded_at, prekeys_remaining) "
    "SELECT device_id, 1, '\\x00'::bytea, '\\x00'::bytea, "
    "now() - (CASE WHEN random() < 0.003 THEN 120 ELSE random() * 60 END) * interval '1 day', "
    # A revoked device's pool is emptied by the service (prekeys_remaining = 0).
    "CASE WHEN status = 'revoked' THEN 0 WHEN random() < 0.005 THEN floor(random() * 10)::int "
    "ELSE 20 + floor(random() * 80)::int END FROM e2ee_devices",
    "INSERT INTO dm_conversations (pair_key, created_by, created_at) "
    "SELECT 'p' || g, 1 + (g::bigint * 7919) %% %(users)s, now() - random() * interval '30 days' "
    "FROM generate_series(1, %(conversations)s) g",
    "INSERT INTO dm_conversation_members (conversation_id, user_id) "
    "SELECT conversation_id, created_by FROM dm_conversations "
    "UNION SELECT conversation_id, 1 + (created_by + 1) %% %(users)s FROM dm_conversations",
    # Skewed senders: a power-ish law so a few users dominate, like a burst.
    "INSERT INTO dm_messages (conversation_id, sender_user_id, sender_device_id, "
    "client_message_id, created_at) "
    # The random conversation is drawn once per message in a subquery: a volatile
    # expression in the join condition would be drawn once per row pair instead.
    "SELECT c.conversation_id, c.created_by, gen_random_uuid(), 'm' || r.g, "
    "now() - random() * interval '24 hours' "
    "FROM (SELECT g, 1 + floor(power(random(), %(skew)s) * %(conversations)s)::bigint AS conv "
    "      FROM generate_series(1, %(messages)s) g) r "
    "JOIN dm_conversations c ON c.conversation_id = r.conv",
    "INSERT INTO dm_rate_limit_events (user_id, occurred_at) "
    "SELECT 1 + floor(power(random(), 4) * %(users)s)::bigint, "
    "now() - random() * interval '24 hours' FROM generate_series(1, %(rate_limited)s) g",
]


def scale(devices: int, messages: int, skew: float = 3.0) -> dict[str, Any]:
    users = max(devices * 2 // 3, 10)
    return {
        "skew": skew,
        "users": users,
        "devices": devices,
        "conversations": max(users, 10),
        "messages": messages,
        "rate_limited": max(messages // 20, 10),
    }


def seed(conn: Any, *, devices: int, messages: int, skew: float = 3.0) -> dict[str, Any]:
    """Fill an empty, migrated database; ANALYZE so the planner sees the real sizes.

    `skew`: each message's conversation is drawn as random()^skew over all of them, so
    3 gives a few busy senders over a long tail, 1 flat traffic.
    """
    params = scale(devices, messages, skew)
    for statement in SEED_SQL:
        conn.execute(statement, params)
    conn.execute("ANALYZE")
    return params


def runbook_stuck_params(limit: int = 50, *, everything: bool = True) -> dict[str, Any]:
    """`devices stuck`'s query parameters at the runbook's default thresholds.

    `everything=False` asks for the prekey pools only (`--pools-only`), the runbook's
    own question; otherwise stale signed prekeys and inactive devices are listed too.
    """
    from e2ee_ops.adapters.devices_db import stuck_params
    from e2ee_ops.config import Thresholds

    t = Thresholds()
    return stuck_params(
        critical=t.otpk_critical,
        warning=t.otpk_warning,
        spk_max_age_seconds=t.signed_prekey_max_age_days * 86400.0 if everything else None,
        inactive_seconds=t.device_inactive_days * 86400.0 if everything else None,
        user_id=None,
        limit=limit,
    )
