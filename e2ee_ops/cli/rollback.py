"""`e2ee-ops rollback`: Rollback and hotfix: feature flag, Alembic migration, git."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from e2ee_ops.cli.acting import carry_out, confirm_execution
from e2ee_ops.cli.common import (
    MAX_COUNT,
    ExecuteOption,
    OutputOption,
    YesOption,
    app_context,
    finish,
)
from e2ee_ops.errors import UsageError

if TYPE_CHECKING:
    from e2ee_ops.status import Plan

app = typer.Typer(
    name="rollback",
    help="Rollback and hotfix (runbook: Rollback/Hotfix Procedures): feature flag, "
    "Alembic migration, git. Each command shows its plan; --execute acts.",
    no_args_is_help=True,
)

# What the journal's outcome entry keeps of an executed plan's data, beside its steps.
OUTCOME_KEYS = ("backup", "value", "target", "commit", "branch")


# ---- flag -------------------------------------------------------------------------------


@app.command("flag")
def flag(
    ctx: typer.Context,
    disable: Annotated[
        bool, typer.Option("--disable", help="Set E2EE_DM_ENABLED=false (the rollback).")
    ] = False,
    enable: Annotated[
        bool, typer.Option("--enable", help="Set E2EE_DM_ENABLED=true (undo the rollback).")
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="PATH",
            dir_okay=False,
            help="The service's env file (default: rollback.env_file from the config).",
        ),
    ] = None,
    execute: ExecuteOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
) -> None:
    """Set E2EE_DM_ENABLED in the env file (that one line rewritten, a backup kept), restart
    the API, then verify: with --disable GET /dm/conversations must answer 403 "E2EE DM is
    not enabled" and an open SSE stream must be closed by the server; with --enable, 200."""
    from e2ee_ops.cli.targets import flag_targets
    from e2ee_ops.procedures.rollback_flag import rollback_flag

    if disable == enable:
        raise UsageError("give exactly one of --disable or --enable")
    targets = flag_targets(app_context(ctx), env_file)
    carry_out(
        ctx,
        command="rollback flag",  # the direction is in the entries' data ("value")
        plan=rollback_flag(targets, enable=enable, execute=False),
        execute=execute,
        yes=yes,
        act=lambda: rollback_flag(targets, enable=enable, execute=True),
        outcome_keys=OUTCOME_KEYS,
        output=output,
    )


# ---- migration --------------------------------------------------------------------------


@app.command("migration")
def migration(
    ctx: typer.Context,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, max=MAX_COUNT, metavar="N", help="Undo N revisions."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="REV", help="Undo down to this revision (or `base`)."),
    ] = None,
    allow_data_loss: Annotated[
        bool,
        typer.Option(
            "--allow-data-loss",
            help="Allow dropping or emptying protected (E2EE) tables that hold rows; their "
            "names must then be typed back, or given with --confirm-tables.",
        ),
    ] = False,
    confirm_tables: Annotated[
        str | None,
        typer.Option(
            "--confirm-tables",
            metavar="T1,T2",
            help="With --allow-data-loss, unattended: the tables that will lose rows, "
            "comma-separated, exactly as the plan lists them.",
        ),
    ] = None,
    execute: ExecuteOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
) -> None:
    """Without options: `alembic current` and `history`. With --steps N or --to REV: plan
    the downgrade (revisions, offline SQL, every table dropped or emptied with its row
    count); refuse to lose rows of E2EE tables; with --execute, downgrade and verify."""
    from e2ee_ops.cli.targets import migration_targets
    from e2ee_ops.procedures.rollback_migration import migration_status, rollback_migration

    if steps is not None and to is not None:
        raise UsageError("give --steps N or --to REV, not both")
    if confirm_tables is not None and not allow_data_loss:
        raise UsageError("--confirm-tables goes with --allow-data-loss")
    env = app_context(ctx)
    targets = migration_targets(env)
    if steps is None and to is None:
        if execute:
            raise UsageError("--execute needs --steps N or --to REV")
        finish(ctx, migration_status(targets), output=output)

    plan = rollback_migration(
        targets, steps=steps, to=to, execute=False, allow_data_loss=allow_data_loss
    )
    at_risk: list[str] = plan.data.get("at_risk_tables", [])

    def confirm(plan: Plan) -> None:
        if at_risk and not allow_data_loss:
            return  # the procedure refuses, with the reason, before anything is done
        if not at_risk:
            confirm_execution(env, plan, yes=yes)
            return
        typed = ",".join(at_risk)
        if confirm_tables is None:  # --yes does not waive typing the names back
            confirm_execution(
                env, plan, yes=yes, typed=typed, unattended=f"--confirm-tables {typed}"
            )
            return
        given = {name.strip() for name in confirm_tables.split(",") if name.strip()}
        if given != set(at_risk):
            raise UsageError(
                f"--confirm-tables does not name the tables that would lose rows ({typed}); "
                "nothing was changed"
            )
        confirm_execution(env, plan, yes=yes)

    carry_out(
        ctx,
        command="rollback migration",
        plan=plan,
        execute=execute,
        confirm=confirm,
        outcome_keys=OUTCOME_KEYS,
        # Only the tables confirmed from the plan shown; rows that appear elsewhere since
        # make the procedure refuse.
        act=lambda: rollback_migration(
            targets,
            steps=steps,
            to=to,
            execute=True,
            allow_data_loss=allow_data_loss,
            confirmed_tables=set(at_risk),
        ),
        output=output,
    )


# ---- git --------------------------------------------------------------------------------


@app.command("git")
def git(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="COMMIT", help="The commit to go back to.")],
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo", metavar="PATH", file_okay=False, help="The repository (default: here)."
        ),
    ] = None,
    remote: Annotated[
        str, typer.Option("--remote", metavar="NAME", help="The remote to push to.")
    ] = "origin",
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch", metavar="NAME", help="The branch (default: rollback-e2ee-YYYYMMDD)."
        ),
    ] = None,
    execute: ExecuteOption = False,
    yes: YesOption = False,
    output: OutputOption = None,
) -> None:
    """Check the commit exists and the work tree is clean, show the commits undone, create
    the rollback branch, reset it to the commit, push it with --force-with-lease, verify
    with git ls-remote that the remote branch points at the commit."""
    from e2ee_ops.cli.targets import git_targets
    from e2ee_ops.procedures.rollback_git import rollback_git

    targets = git_targets(app_context(ctx), repo=repo, remote=remote, branch=branch)
    carry_out(
        ctx,
        command="rollback git",
        plan=rollback_git(targets, to=to, execute=False),
        execute=execute,
        yes=yes,
        act=lambda: rollback_git(targets, to=to, execute=True),
        outcome_keys=OUTCOME_KEYS,
        output=output,
    )
