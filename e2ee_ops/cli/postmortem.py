"""`e2ee-ops postmortem`: Post-mortem checklist in Markdown, prefilled with what was measured."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "postmortem",
    summary="Post-mortem checklist in Markdown, prefilled with what was measured.",
    planned=["checklist"],
)
