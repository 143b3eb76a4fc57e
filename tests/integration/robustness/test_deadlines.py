"""Every run ends within its limits: --timeout is a hard bound, whatever the servers do."""

from __future__ import annotations

from pathlib import Path

from tests.integration.robustness.conftest import run_cli, write_config
from tests.integration.robustness.fakes import hang


def test_timeout_is_a_hard_bound_against_an_api_that_never_answers(
    fake_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({}, default=hang)
    # Per-call timeouts far beyond --timeout: only the overall deadline can end the run.
    config = write_config(tmp_path, api={"base_urls": [api.url], "timeout_seconds": 60})
    run = run_cli("--config", str(config), "--timeout", "2", "redis", "check",
                  home=tmp_path, limit=20)  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().endswith(
        "gave up after 2 s (--timeout): the state is unknown; retry with a longer --timeout"
    )
    assert any(r.startswith("GET /dm/metrics") for r in api.requests)
