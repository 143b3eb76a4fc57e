"""The guard in front of every mutation: plan shown, then an explicit yes."""

from __future__ import annotations

import dataclasses
import sys

import typer

from e2ee_ops.context import AppContext
from e2ee_ops.errors import UsageError
from e2ee_ops.render import OutputFormat, render
from e2ee_ops.status import Plan


def confirm_execution(
    env: AppContext,
    plan: Plan,
    *,
    yes: bool,
    typed: str | None = None,
    unattended: str = "--yes",
) -> None:
    """Ask before acting, unless --yes; refuse to guess when nobody can answer.

    `typed` is a phrase the operator must type back (data loss), which --yes does not
    waive unless the caller decided it may; `unattended` is then the option that does,
    named in the hint when nobody is at a terminal.
    """
    if yes and typed is None:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "--execute needs a confirmation and standard input is not a terminal",
            hint=f"add {unattended} to run unattended (cron, CI)",
        )
    # The operator ran --execute: the plan shown asks to go ahead, not to add it.
    pending = dataclasses.replace(
        plan, summary=f"plan of {len(plan.steps)} steps; nothing changed yet"
    )
    render(pending, OutputFormat.TABLE, env.err)
    if typed is not None:
        answer = typer.prompt(f"Type {typed!r} to go ahead", err=True, default="")
        if answer.strip() != typed:
            raise UsageError("confirmation did not match; nothing was changed")
        return
    if not typer.confirm("Go ahead?", err=True, default=False):
        raise UsageError("not confirmed; nothing was changed")
