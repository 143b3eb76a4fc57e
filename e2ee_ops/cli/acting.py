"""How every acting command carries out its plan: one piece of code for all of them.

Without --execute the plan is shown and nothing changes. With it: confirm (or --yes),
journal the plan, act, journal the outcome (also when acting fails), render, exit.
The confirmation is the guard in front of every mutation: plan shown, then an explicit
yes.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from e2ee_ops.cli.common import app_context, finish
from e2ee_ops.cli.targets import action_lock
from e2ee_ops.context import AppContext
from e2ee_ops.errors import E2eeOpsError, Terminated, UsageError
from e2ee_ops.journal import OUTCOME, PLAN
from e2ee_ops.render import OutputFormat, render
from e2ee_ops.status import executing

if TYPE_CHECKING:
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
        env.unbounded()  # acting runs as long as its steps' own deadlines say
        if confirm is None:
            confirm_execution(env, plan, yes=yes)
        else:
            confirm(plan)
        journal = env.journal()
        extra = dict(journal_data or {})
        # One actor at a time; a run that waited acts on the state as it is now.
        with action_lock(env, command.split()[0], command=command):
            journal.append(
                PLAN,
                command=command,
                data={**extra, "steps": [s.description for s in plan.steps], **plan.data},
            )
            with executing() as started:
                try:
                    plan = act()
                except BaseException as exc:
                    # Every plan entry gets its outcome, whatever happened: a second
                    # Ctrl-C or SIGTERM waits until it is written.
                    failed = {**extra, **_failed(exc, started())}
                    with _signals_held():
                        journal.append(OUTCOME, command=command, data=failed)
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


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block; one that arrived is delivered after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _failed(exc: BaseException, partial: Plan | None) -> dict[str, Any]:
    """The outcome of an act that did not return: refused, interrupted or unknown, with
    the steps that completed before it stopped."""
    done = [s.outcome for s in partial.steps if s.executed] if partial is not None else []
    if isinstance(exc, KeyboardInterrupt):
        by = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        return {"status": "INTERRUPTED", "error": f"interrupted by {by}", "completed": done}
    if isinstance(exc, UsageError):  # a refusal by the last checks, before any change
        return {"status": "REFUSED", "error": exc.sentence, "completed": done}
    if isinstance(exc, E2eeOpsError):  # lost connection, --timeout: state unknown
        return {"status": "UNKNOWN", "error": exc.sentence, "completed": done}
    return {
        "status": "UNKNOWN",
        "error": f"internal error: {type(exc).__name__}",
        "completed": done,
    }
