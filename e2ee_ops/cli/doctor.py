"""`e2ee-ops doctor`: every read-only check at once (not implemented yet)."""

from __future__ import annotations

import typer

from e2ee_ops.cli.common import not_implemented


def doctor(ctx: typer.Context) -> None:
    """Run all read-only checks concurrently, for CI smoke tests. [not implemented yet]"""
    not_implemented("doctor")
