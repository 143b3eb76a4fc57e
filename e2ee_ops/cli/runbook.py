"""`e2ee-ops runbook`: The runbook, step by step, with the command for each step."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "runbook",
    summary="The runbook, step by step, with the command for each step.",
    planned=["show"],
)
