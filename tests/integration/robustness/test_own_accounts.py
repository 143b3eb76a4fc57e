"""`abuse block` guards the toolkit's own accounts: the canaries and the admin."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops import sandbox
from tests.support.cli import cli


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("canary_b", "the configured canary account (canary.account_b)"),
        ("canary_a", "listed in abuse.protected_accounts"),
        ("admin", "listed in abuse.protected_accounts"),
    ],
)
def test_blocking_an_own_account_is_refused_without_force(
    sandbox_state: sandbox.SandboxState, sandbox_config: Path, admin_client, key: str, why: str
) -> None:  # type: ignore[no-untyped-def]
    account = sandbox_state.accounts[key].account_id
    result = cli("--config", str(sandbox_config), "abuse", "block", str(account),
                 "--reason", "looks spammy", "--execute", "--yes")  # fmt: skip
    assert result.exit_code == 64, result.stdout + result.stderr
    assert f"account {account} is {why}" in result.stderr
    assert "add --force" in result.stderr
    assert admin_client.request("GET", f"/admin/users/{account}")["blocked"] is False

    forced = cli("--config", str(sandbox_config), "-o", "json", "abuse", "block", str(account),
                 "--reason", "drill", "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.stderr  # with --force, the plan is shown
    assert forced.json["executed"] is False
