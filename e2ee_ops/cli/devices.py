"""`e2ee-ops devices`: low one-time prekey pools, stale signed prekeys, inactivity."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "devices",
    summary="Stuck devices: low one-time prekey pools, stale signed prekeys, inactivity.",
    planned=["stuck"],
)
