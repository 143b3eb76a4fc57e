"""`e2ee-ops sandbox`: Embedded Postgres, Redis and the reference server for trying things."""

from e2ee_ops.cli.common import planned_group

app = planned_group(
    "sandbox",
    summary="Embedded Postgres, Redis and the reference server for trying things.",
    planned=["up", "down", "status"],
)
