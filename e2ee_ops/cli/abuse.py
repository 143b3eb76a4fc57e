"""`e2ee-ops abuse`: Abuse bursts: top senders by metadata, block and unblock."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "abuse",
    summary="Abuse bursts: top senders by metadata, block and unblock.",
    planned=["top-senders", "block", "unblock"],
)
