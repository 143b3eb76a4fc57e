"""`e2ee-ops demo`: the whole stack on embedded servers (not implemented yet)."""

from __future__ import annotations

import typer

from e2ee_ops.cli.common import not_implemented


def demo(ctx: typer.Context) -> None:
    """Start the sandbox and walk through the runbook against it. [not implemented yet]"""
    not_implemented("demo")
