"""Names of the metrics the reference server exports on `/metrics`.

One list for the server that exports them, the alert rules that query them and the
checks that read them, so they never drift apart. Every name has the `e2ee_` prefix
(Redis's own exporter already has a `redis_up`) and base units (seconds, not days).
Counters are declared without `_total`; the exposition adds it.
"""

from __future__ import annotations

# ---- per instance -----------------------------------------------------------------------
REDIS_UP = "e2ee_redis_up"
REDIS_UNAVAILABLE_SECONDS = "e2ee_redis_unavailable_seconds"
RELAY_LAG = "e2ee_relay_lag"
PUBSUB_LAG_SECONDS = "e2ee_pubsub_lag_seconds"
RELAY_PUBLISH_FAILURES = "e2ee_relay_publish_failures"  # counter
HTTP_ERRORS = "e2ee_http_errors"  # counter, labels status and code
MESSAGES_SENT = "e2ee_messages_sent"  # counter
PREKEY_CLAIMS = "e2ee_prekey_claims"  # counter
SSE_CONNECTS = "e2ee_sse_connects"  # counter
SSE_DISCONNECTS = "e2ee_sse_disconnects"  # counter
SSE_FAILURES = "e2ee_sse_failures"  # counter
SSE_CONNECTIONS = "e2ee_sse_connections"
DELIVERY_LATENCY_SECONDS = "e2ee_delivery_latency_seconds"  # histogram

# ---- shared, from PostgreSQL ------------------------------------------------------------
DM_ENABLED = "e2ee_dm_enabled"
OTPK_DEVICES_ACTIVE = "e2ee_otpk_devices_active"
OTPK_DEVICES_BELOW_CRITICAL = "e2ee_otpk_devices_below_critical"
OTPK_DEVICES_BELOW_WARNING = "e2ee_otpk_devices_below_warning"
OTPK_DEVICES_EXHAUSTED = "e2ee_otpk_devices_exhausted"
OTPK_REMAINING_MIN = "e2ee_otpk_remaining_min"
OTPK_REMAINING_AVG = "e2ee_otpk_remaining_avg"
PREKEY_CLAIMS_LAST_HOUR = "e2ee_prekey_claims_last_hour"
SIGNED_PREKEY_AGE_MAX_SECONDS = "e2ee_signed_prekey_age_max_seconds"
SIGNED_PREKEY_DEVICES_OVER_MAX_AGE = "e2ee_signed_prekey_devices_over_max_age"
IDENTITY_CHANGES_MAX_PER_USER_24H = "e2ee_identity_changes_max_per_user_24h"
IDENTITY_CHANGE_USERS_OVER_THRESHOLD = "e2ee_identity_change_users_over_threshold"
UNDELIVERED_MESSAGES_5M = "e2ee_undelivered_messages_5m"


def total(counter: str) -> str:
    """The exposed sample name of a counter."""
    return counter + "_total"
