"""`rollback flag` against the session sandbox: the reference server really restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from e2ee_ops import sandbox
from e2ee_ops.reference.client import ReferenceClient
from tests.integration.conftest import token_of
from tests.support.cli import CliResult, cli


def run(config: Path, *args: str) -> CliResult:
    return cli("--config", str(config), "rollback", "flag", *args)


def api_pid(state: sandbox.SandboxState) -> int | None:
    return sandbox.SandboxState.load(state.dir).api_pid


def dm_enabled(state: sandbox.SandboxState) -> bool:
    return bool(httpx.get(state.api_url + "/health", timeout=5).json()["e2ee_dm_enabled"])


@pytest.fixture
def flag_restored(
    sandbox_state: sandbox.SandboxState, sandbox_config: Path
) -> Iterator[tuple[sandbox.SandboxState, Path, str]]:
    """The sandbox shared with other tests: whatever happens here, it ends with its env file
    as it was and the API serving with E2EE DM enabled."""
    original = sandbox_state.api_env_path.read_text()
    yield sandbox_state, sandbox_config, original
    if sandbox_state.api_env_path.read_text() != original:
        sandbox_state.api_env_path.write_text(original)
    for backup in sandbox_state.dir.glob("api.env.*.bak"):
        backup.unlink()
    sandbox.start_service(sandbox_state.dir, "api")
    if not dm_enabled(sandbox_state):
        sandbox.restart_service(sandbox_state.dir, "api")
    assert dm_enabled(sandbox_state)


def test_disable_then_enable_with_the_runbook_checks(flag_restored) -> None:  # type: ignore[no-untyped-def]
    state, config, original = flag_restored
    env_file = state.api_env_path
    # A duplicate, as `echo "E2EE_DM_ENABLED=false" >> .env` would leave behind.
    env_file.write_text(original + "# added by hand\nE2EE_DM_ENABLED=true\n")
    pid = api_pid(state)
    pids = sandbox.SandboxState.load(state.dir).api_pids

    plan = run(config, "--disable", "-o", "json")
    assert plan.exit_code == 0, plan.stderr
    assert plan.json["executed"] is False and plan.json["data"]["restart"] is True
    assert any("restart the API" in s["description"] for s in plan.json["steps"])
    assert "E2EE_DM_ENABLED=true\n" in env_file.read_text() and api_pid(state) == pid

    refused = run(config, "--disable", "--execute")  # no terminal, no --yes
    assert refused.exit_code == 64 and "--yes" in refused.stderr

    done = run(config, "--disable", "--execute", "--yes", "-o", "json")
    assert done.exit_code == 0, done.stdout + done.stderr
    steps = done.json["steps"]
    assert all(s["status"] == "OK" for s in steps), steps
    assert "closing" in steps[-1]["outcome"]  # the open stream was closed gracefully
    assert api_pid(state) != pid  # really restarted
    # Every instance of the fleet, not only the first: restarted, and verified.
    restarted = sandbox.SandboxState.load(state.dir).api_pids
    assert len(restarted) == 2 and set(restarted).isdisjoint(pids)
    for url in state.api_urls:
        with ReferenceClient(url, token_of(state, "demo")) as user:
            assert user.http.get("/dm/conversations").json() == {"detail": "E2EE DM is not enabled"}
    assert "on 2 instance(s)" in steps[-1]["outcome"]

    # The one line rewritten, the duplicate gone, everything else as it was.
    expected = original.replace("E2EE_DM_ENABLED=true\n", "E2EE_DM_ENABLED=false\n")
    assert env_file.read_text() == expected + "# added by hand\n"
    backups = list(state.dir.glob("api.env.*.bak"))
    assert len(backups) == 1 and backups[0].read_text().endswith("E2EE_DM_ENABLED=true\n")

    with ReferenceClient(state.api_url, token_of(state, "demo")) as user:
        answer = user.http.get("/dm/conversations")
    assert answer.status_code == 403
    assert answer.json() == {"detail": "E2EE DM is not enabled"}

    journal = [json.loads(x) for x in (state.dir / "journal.jsonl").read_text().splitlines()]
    mine = [e for e in journal if e["command"] == "rollback flag"]
    assert [e["kind"] for e in mine][-2:] == ["plan", "outcome"]
    assert mine[-1]["data"]["status"] == "OK" and mine[-1]["data"]["value"] == "false"

    pid = api_pid(state)
    again = run(config, "--disable", "--execute", "--yes", "-o", "json")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "nothing to change" in again.json["summary"]
    assert api_pid(state) == pid  # already off everywhere: no restart

    enabled = run(config, "--enable", "--execute", "--yes", "-o", "json")
    assert enabled.exit_code == 0, enabled.stdout + enabled.stderr
    assert all(s["status"] == "OK" for s in enabled.json["steps"]), enabled.json["steps"]
    assert dm_enabled(state)
    assert env_file.read_text() == original + "# added by hand\n"
    with ReferenceClient(state.api_url, token_of(state, "demo")) as user:
        assert user.http.get("/dm/conversations").status_code == 200


def test_missing_env_file_is_one_clear_error_and_nothing_is_done(
    flag_restored, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    state, config, original = flag_restored
    pid = api_pid(state)
    missing = tmp_path / "nowhere.env"
    result = run(config, "--disable", "--env-file", str(missing), "--execute", "--yes")
    assert result.exit_code == 3
    assert f"the env file {missing} does not exist" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert api_pid(state) == pid and dm_enabled(state)
    assert state.api_env_path.read_text() == original


def test_a_restart_that_does_not_restart_fails_the_verification(
    flag_restored, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    state, config, original = flag_restored
    settings = yaml.safe_load(config.read_text())
    settings["services"]["api"]["restart"] = {"method": "command", "command": ["true"]}
    settings["rollback"].update(health_deadline_seconds=1, stream_close_seconds=1)
    broken = tmp_path / "no-op-restart.yaml"
    broken.write_text(yaml.safe_dump(settings))
    pid = api_pid(state)

    result = run(broken, "--disable", "--execute", "--yes", "-o", "json")
    assert result.exit_code == 2, result.stdout + result.stderr
    steps = result.json["steps"]
    failed = next(s for s in steps if s["status"] == "CRITICAL")
    assert "e2ee_dm_enabled=true" in failed["outcome"]  # the API still runs with DM on
    assert steps[-1]["outcome"].startswith("not run")
    assert api_pid(state) == pid and dm_enabled(state)
