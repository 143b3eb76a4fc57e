"""`e2ee-ops rollback`: Rollback and hotfix: feature flag, Alembic migration, git."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "rollback",
    summary="Rollback and hotfix: feature flag, Alembic migration, git.",
    planned=["flag", "migration", "git"],
)
