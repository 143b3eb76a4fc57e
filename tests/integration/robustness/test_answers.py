"""Answers are checked and bounded: an API that answers HTML, garbage, wrongly typed
JSON or an endless body is UNKNOWN with a sentence, never a guess and never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.robustness.conftest import TOKEN_ENV, write_config
from tests.integration.robustness.fakes import (
    endless,
    endless_sse,
    hang,
    html,
    json_body,
    not_http,
)
from tests.support.cli import cli

CASES = {
    "html": (html, "with something that is not JSON (HTTP 200, text/html)"),
    "not-http": (not_http, "broke the connection during GET /dm/metrics"),
    "string-for-bool": (
        json_body({"redis_status": "ok", "relay_lag": "false"}),
        "with an unreadable answer (relay_lag: Input should be a valid boolean)",
    ),
    "endless": (endless, "answered GET /dm/metrics with more than 1000000 bytes"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_metrics_answer_is_unknown_not_critical(
    fake_server, tmp_path: Path, redis_url: str, case: str
) -> None:  # type: ignore[no-untyped-def]
    behaviour, said = CASES[case]
    api = fake_server({"/dm/metrics": behaviour, "/dm/devices/": hang})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url], "max_response_bytes": 1_000_000},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 0.5},
    )
    result = cli("--config", str(config), "-o", "json", "redis", "check", env=TOKEN_ENV)
    assert result.exit_code == 3, result.stdout + result.stderr
    findings = result.json["findings"]
    assert not [f for f in findings if f["status"] == "CRITICAL"]
    metrics = next(f for f in findings if f["name"].startswith("api metrics"))
    assert metrics["status"] == "UNKNOWN"
    assert said in metrics["summary"]


def test_an_endless_prometheus_answer_is_cut_at_the_cap(fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({"/metrics": endless})
    config = write_config(tmp_path, api={"base_urls": [api.url], "max_response_bytes": 500_000})
    result = cli("--config", str(config), "-o", "json", "alerts", "check", env=TOKEN_ENV)
    assert result.exit_code == 3, result.stdout + result.stderr
    summaries = [f["summary"] for f in result.json["findings"] if f["status"] == "UNKNOWN"]
    assert any("answered GET /metrics with more than 500000 bytes" in s for s in summaries)


def test_an_endless_event_stream_is_cut_at_the_cap(
    fake_server, tmp_path: Path, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    healthy = {"redis_status": "ok", "relay_lag": False}
    api = fake_server({"/dm/metrics": json_body(healthy), "/dm/devices/": endless_sse})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url], "max_response_bytes": 1_000_000},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 30},  # the cap, not the deadline, ends it
    )
    result = cli("--config", str(config), "-o", "json", "redis", "check", env=TOKEN_ENV)
    assert result.exit_code == 3, result.stdout + result.stderr
    heartbeat = next(f for f in result.json["findings"] if f["name"].startswith("sse heart"))
    assert heartbeat["status"] == "UNKNOWN"
    assert "sent more than 1000000 bytes on GET /dm/devices/dev-b/stream" in heartbeat["summary"]
