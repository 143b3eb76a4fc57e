"""`e2ee-ops redis`: Redis outage: detect, recover and watch the pub/sub relay."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "redis",
    summary="Redis outage: detect, recover and watch the pub/sub relay.",
    planned=["check", "recover", "watch"],
)
