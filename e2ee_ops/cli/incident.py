"""`e2ee-ops incident`: Incident response: open, log, status and close, with a timeline."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "incident",
    summary="Incident response: open, log, status and close, with a timeline.",
    planned=["open", "log", "status", "close"],
)
