"""How every acting command carries out its plan: one piece of code for all of them.

Without --execute the plan is shown and nothing changes. With it: confirm (or --yes),
journal the plan, act, journal the outcome (also when acting fails), render, exit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from e2ee_ops.cli.common import app_context, finish
from e2ee_ops.cli.confirm import confirm_execution
from e2ee_ops.cli.targets import action_lock
from e2ee_ops.errors import E2eeOpsError, Terminated, UsageError

if TYPE_CHECKING:
    from e2ee_ops.render import OutputFormat
    from e2ee_ops.status import Plan


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
                "plan",
                command=command,
                data={**extra, "steps": [s.description for s in plan.steps], **plan.data},
            )
            try:
                plan = act()
            except BaseException as exc:
                # Every plan entry gets its outcome, whatever happened.
                journal.append("outcome", command=command, data={**extra, **_failed(exc)})
                raise
            journal.append(
                "outcome",
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


def _failed(exc: BaseException) -> dict[str, Any]:
    """The outcome of an act that did not return: refused, interrupted or unknown."""
    if isinstance(exc, KeyboardInterrupt):
        by = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        return {"status": "INTERRUPTED", "error": f"interrupted by {by}"}
    if isinstance(exc, UsageError):  # a refusal by the last checks, before any change
        return {"status": "REFUSED", "error": exc.sentence}
    if isinstance(exc, E2eeOpsError):  # lost connection, --timeout: state unknown
        return {"status": "UNKNOWN", "error": exc.sentence}
    return {"status": "UNKNOWN", "error": f"internal error: {type(exc).__name__}"}
