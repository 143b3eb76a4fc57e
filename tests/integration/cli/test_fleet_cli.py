"""The session sandbox runs two API instances: `doctor`, `redis check` and `alerts check`
report each instance by name, and find the one sick instance (stopped with
`sandbox stop api --instance 2`, or cut off from Redis) while the other stays healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_ops import sandbox
from tests.support.cli import cli


@pytest.mark.parametrize(
    "command", [("doctor",), ("redis", "check"), ("alerts", "check")], ids=" ".join
)
def test_a_single_stopped_instance_is_found_and_named(  # type: ignore[no-untyped-def]
    command, sandbox_state: sandbox.SandboxState, sandbox_config: Path
) -> None:
    healthy, sick = (url.removeprefix("http://") for url in sandbox_state.api_urls)
    before = cli("--config", str(sandbox_config), "--output", "json", *command)
    assert before.exit_code == 0, before.stdout + before.stderr
    assert any(sick in f["name"] for f in before.json["findings"])  # both instances read

    stop = cli("sandbox", "stop", "api", "--instance", "2", "--state-dir", str(sandbox_state.dir))
    assert stop.exit_code == 0, stop.stderr
    state = sandbox.SandboxState.load(sandbox_state.dir)
    assert state.api_pids[0] is not None and state.api_pids[1] is None

    result = cli("--config", str(sandbox_config), "--output", "json", *command)
    findings = result.json["findings"]
    # The toolkit cannot reach one instance: UNKNOWN (exit 3), never CRITICAL.
    assert result.exit_code == 3, result.stdout
    unknown = [f for f in findings if f["status"] == "UNKNOWN"]
    assert unknown and all(sick in f["name"] for f in unknown)
    assert all(f["status"] == "OK" for f in findings if healthy in f["name"])
    assert any(healthy in f["name"] for f in findings)


def test_sandbox_instance_must_exist(sandbox_state: sandbox.SandboxState) -> None:
    result = cli("sandbox", "stop", "api", "--instance", "3", "--state-dir", str(sandbox_state.dir))
    assert result.exit_code != 0
    assert "no API instance 3: the sandbox runs 2 (1 to 2)" in result.stderr
    wrong = cli(
        "sandbox", "stop", "redis", "--instance", "1", "--state-dir", str(sandbox_state.dir)
    )
    assert wrong.exit_code == 64 and "api service only" in wrong.stderr


def test_an_instance_cut_off_from_redis_is_found_by_its_own_signals(
    sandbox_state: sandbox.SandboxState, sandbox_config: Path
) -> None:
    healthy, sick = (url.removeprefix("http://") for url in sandbox_state.api_urls)
    own_env = sandbox.instance_env_path(sandbox_state, 1)
    # Instance 2 alone points at a port where no Redis listens; Redis itself is fine.
    own_env.write_text("E2EE_REDIS_URL=redis://127.0.0.1:1/0\n")
    try:
        sandbox.restart_service(sandbox_state.dir, "api", 2)
        for command in (("doctor",), ("redis", "check")):
            result = cli("--config", str(sandbox_config), "--output", "json", *command)
            findings = {f["name"]: f for f in result.json["findings"]}
            assert result.exit_code == 2, result.stdout
            assert findings[f"api redis_status ({sick})"]["status"] == "CRITICAL"
            assert findings[f"api redis_status ({sick})"]["value"] == "unavailable"
            assert findings[f"api redis_status ({healthy})"]["status"] == "OK"
            assert all(f["status"] == "OK" for n, f in findings.items() if healthy in n)
    finally:
        own_env.unlink()
        sandbox.restart_service(sandbox_state.dir, "api", 2)
