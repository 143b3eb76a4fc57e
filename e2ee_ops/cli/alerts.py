"""`e2ee-ops alerts`: Prometheus rules from the thresholds; evaluate every threshold now."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "alerts",
    summary="Monitoring: Prometheus rules from the thresholds, evaluate every threshold now.",
    planned=["rules", "check"],
)
