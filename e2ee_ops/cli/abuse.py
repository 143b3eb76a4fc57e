"""`e2ee-ops abuse`: abuse bursts (runbook: Abuse Burst Response), metadata only."""

from __future__ import annotations

from typing import Annotated

import typer

from e2ee_ops.cli.common import (
    MAX_COUNT,
    MAX_ID,
    ExecuteOption,
    OutputOption,
    YesOption,
    app_context,
    finish,
)

app = typer.Typer(
    name="abuse",
    help="Abuse bursts (runbook: Abuse Burst Response): top senders by metadata "
    "(messages, fan-out, churn, 429s), block and unblock through the admin API.",
    no_args_is_help=True,
)

VerifyTokenOption = Annotated[
    str | None,
    typer.Option(
        "--verify-token",
        metavar="NAME",
        help="A configured token of this user (tokens.NAME: user, canary_a, canary_b) to "
        "prove the block by the user's own send; without it the admin API verifies.",
    ),
]


@app.command("top-senders")
def top_senders(
    ctx: typer.Context,
    window: Annotated[str, typer.Option("--window", help="How far back: 30m, 1h, 2d, ...")] = "1h",
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_COUNT, help="Senders to show.")
    ] = 10,
    output: OutputOption = None,
) -> None:
    """Per sender in the window: messages, distinct recipients (fan-out), new
    conversations (churn) and 429s. Exit code by the worst sender against the
    thresholds.abuse_* rates (per hour)."""
    from e2ee_ops.cli.targets import abuse_db
    from e2ee_ops.procedures.abuse import parse_window
    from e2ee_ops.procedures.abuse import top_senders as procedure

    env = app_context(ctx)
    seconds = parse_window(window)
    report = procedure(
        db=abuse_db(env),
        thresholds=env.settings.thresholds,
        window_seconds=seconds,
        limit=limit,
    )
    finish(ctx, report, output=output)


def _run(
    ctx: typer.Context,
    *,
    account_id: int,
    reason: str | None,
    block: bool,
    execute: bool,
    yes: bool,
    verify_token: str | None,
    output: OutputOption,
    force: bool = False,
) -> None:
    from e2ee_ops.cli.acting import carry_out
    from e2ee_ops.cli.targets import api_clients, own_accounts, verifier
    from e2ee_ops.procedures.abuse import block_user

    env = app_context(ctx)
    admin = api_clients(env, "admin")[0]
    verifying = verifier(env, verify_token)
    command = f"abuse {'block' if block else 'unblock'} {account_id}"

    def run(do: bool):  # type: ignore[no-untyped-def]
        return block_user(
            admin=admin,
            account_id=account_id,
            reason=reason,
            execute=do,
            block=block,
            verifier=verifying,
            verifier_name=verify_token,
            protected=own_accounts(env),
            force=force,
        )

    carry_out(
        ctx,
        command=command,
        plan=run(False),
        execute=execute,
        yes=yes,
        act=lambda: run(True),
        journal_data={"reason": reason, "account_id": account_id},
        output=output,
    )


@app.command("block")
def block(
    ctx: typer.Context,
    user: Annotated[
        int, typer.Argument(metavar="ACCOUNT_ID", min=1, max=MAX_ID, help="The user to block.")
    ],
    reason: Annotated[
        str, typer.Option("--reason", help="Why: stored by the service and in the journal.")
    ],
    execute: ExecuteOption = False,
    yes: YesOption = False,
    verify_token: VerifyTokenOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Block even a canary account or one in abuse.protected_accounts.",
        ),
    ] = False,
    output: OutputOption = None,
) -> None:
    """Block a user from all messaging through the admin API, then verify it: the admin
    API shows the block, and (with --verify-token) the user's send answers 403. The
    toolkit's own accounts (canaries, abuse.protected_accounts) need --force."""
    _run(
        ctx,
        account_id=user,
        reason=reason,
        block=True,
        execute=execute,
        yes=yes,
        verify_token=verify_token,
        output=output,
        force=force,
    )


@app.command("unblock")
def unblock(
    ctx: typer.Context,
    user: Annotated[
        int, typer.Argument(metavar="ACCOUNT_ID", min=1, max=MAX_ID, help="The user to unblock.")
    ],
    execute: ExecuteOption = False,
    yes: YesOption = False,
    verify_token: VerifyTokenOption = None,
    output: OutputOption = None,
) -> None:
    """Lift an admin block, then verify it: the admin API shows it lifted, and (with
    --verify-token) the user's send passes the block check again."""
    _run(
        ctx,
        account_id=user,
        reason=None,
        block=False,
        execute=execute,
        yes=yes,
        verify_token=verify_token,
        output=output,
    )
