"""How every acting command carries out its plan: one piece of code for all of them.

Without --execute the plan is shown and nothing changes. With it: confirm (or --yes),
journal the plan, act, journal the outcome (also when acting fails), render, exit.
The confirmation is the guard in front of every mutation: plan shown, then an explicit
yes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from e2ee_ops.cli.common import app_context, finish
from e2ee_ops.context import AppContext
from e2ee_ops.errors import E2eeOpsError, UsageError
from e2ee_ops.journal import OUTCOME, PLAN
from e2ee_ops.render import OutputFormat, render

if TYPE_CHECKING:
    from e2ee_ops.status import Plan


def confirm_execution(env: AppContext, plan: Plan, *, yes: bool, typed: str | None = None) -> None:
    """Ask before acting, unless --yes; refuse to guess when nobody can answer.

    `typed` is a phrase the operator must type back (data loss), which --yes does not
    waive unless the caller decided it may.
    """
    if yes and typed is None:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "--execute needs a confirmation and standard input is not a terminal",
            hint="add --yes to run unattended (cron, CI)",
        )
    render(plan, OutputFormat.TABLE, env.err)
    if typed is not None:
        answer = typer.prompt(f"Type {typed!r} to go ahead", err=True, default="")
        if answer.strip() != typed:
            raise UsageError("confirmation did not match; nothing was changed")
        return
    if not typer.confirm("Go ahead?", err=True, default=False):
        raise UsageError("not confirmed; nothing was changed")


def carry_out(
    ctx: typer.Context,
    *,
    command: str,
    plan: Plan,
    execute: bool,
    act: Callable[[], Plan],
    yes: bool = False,
    confirm: Callable[[Plan], None] | None = None,
    journal_data: Mapping[str, Any] | None = None,
    outcome_keys: tuple[str, ...] = (),
    output: OutputFormat | None = None,
) -> NoReturn:
    """Show `plan`; with --execute confirm it, journal it, run `act`, journal the outcome.

    `journal_data` goes into both entries (e.g. a block's reason); `outcome_keys` picks
    what of the executed plan's data the outcome entry keeps (the post-mortem reads it).
    `confirm` replaces the default yes/no confirmation (a typed one for data loss).
    """
    env = app_context(ctx)
    if execute:
        if confirm is None:
            confirm_execution(env, plan, yes=yes)
        else:
            confirm(plan)
        journal = env.journal()
        extra = dict(journal_data or {})
        journal.append(
            PLAN,
            command=command,
            data={**extra, "steps": [s.description for s in plan.steps], **plan.data},
        )
        try:
            plan = act()
        except E2eeOpsError as exc:
            # A UsageError is a refusal by the last checks, before any change; anything
            # else (lost connection, --timeout) leaves the state unknown.
            status = "REFUSED" if isinstance(exc, UsageError) else "UNKNOWN"
            journal.append(
                OUTCOME, command=command, data={**extra, "status": status, "error": exc.sentence}
            )
            raise
        journal.append(
            OUTCOME,
            command=command,
            data={
                **extra,
                "status": plan.status.name,
                "summary": plan.one_line_summary(),
                "steps": [s.outcome for s in plan.steps],
                **{k: v for k, v in plan.data.items() if k in outcome_keys},
            },
        )
    finish(ctx, plan, output=output)
