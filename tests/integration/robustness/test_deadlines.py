"""Every run ends within its limits: --timeout is a hard bound, whatever the servers do."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.integration.robustness.conftest import TOKEN_ENV, run_cli, write_config
from tests.integration.robustness.fakes import drip_sse, hang, json_body
from tests.support.cli import cli

HEALTHY_METRICS = {"redis_status": "ok", "relay_lag": False, "pubsub_lag_seconds": 0.001}


def test_timeout_is_a_hard_bound_against_an_api_that_never_answers(
    fake_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({}, default=hang)
    # Per-call timeouts far beyond --timeout: only the overall deadline can end the run.
    config = write_config(tmp_path, api={"base_urls": [api.url], "timeout_seconds": 60})
    # 4 s, not less: on a loaded machine the run must still get as far as asking the API.
    run = run_cli("--config", str(config), "--timeout", "4", "redis", "check",
                  home=tmp_path, limit=20)  # fmt: skip
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().endswith(
        "gave up after 4 s (--timeout): the state is unknown; retry with a longer --timeout"
    )
    assert any(r.startswith("GET /dm/metrics") for r in api.requests)


@pytest.mark.parametrize("stream", [drip_sse, hang], ids=["drip", "hang"])
def test_a_stream_that_never_completes_a_heartbeat_is_unknown(
    fake_server, tmp_path: Path, redis_url: str, stream
) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({"/dm/metrics": json_body(HEALTHY_METRICS), "/dm/devices/": stream})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url]},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 1},
    )
    # No --timeout: the heartbeat's own deadline ends the read.
    run = run_cli("--config", str(config), "-o", "json", "redis", "check",
                  home=tmp_path, limit=20)  # fmt: skip
    assert run.returncode == 3, run.stdout + run.stderr
    findings = {f["name"]: f for f in json.loads(run.stdout)["findings"]}
    heartbeat = findings["sse heartbeat relay_lag"]
    assert heartbeat["status"] == "UNKNOWN"
    assert heartbeat["summary"].startswith("no SSE heartbeat from 127.0.0.1:")
    assert findings["redis ping"]["status"] == "OK"


def test_redis_watch_leaks_no_thread_and_no_socket(
    fake_server, tmp_path: Path, redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    api = fake_server({"/dm/metrics": json_body(HEALTHY_METRICS), "/dm/devices/": drip_sse})
    config = write_config(
        tmp_path,
        api={"base_urls": [api.url]},
        redis={"url": redis_url},
        canary={"delivery_timeout_seconds": 0.5},
    )
    before = set(threading.enumerate())
    result = cli("--config", str(config), "redis", "watch", "--interval", "0.5", "--count", "3",
                 env=TOKEN_ENV)  # fmt: skip
    assert result.exit_code == 3, result.stdout + result.stderr
    assert len([r for r in api.requests if "/stream" in r]) == 3  # one stream per refresh
    bound = time.monotonic() + 5  # the server notices hang-ups on its next drip
    while api.open_connections and time.monotonic() < bound:
        time.sleep(0.05)
    assert api.open_connections == 0
    assert [t.name for t in set(threading.enumerate()) - before] == []  # every one ended


def test_closing_a_stream_ends_its_reader_while_the_server_sends_nothing(fake_server) -> None:  # type: ignore[no-untyped-def]
    from e2ee_ops.adapters.api import ApiClient
    from tests.integration.robustness.fakes import quiet_sse

    api = fake_server({"/dm/devices/": quiet_sse})
    with ApiClient(api.url, timeout=60) as client:
        stream = client.open_stream("d1", lifetime_seconds=600)
        assert stream.wait_for(lambda s: s.opened, 30)
        # The read is blocked in the socket, with no byte to come for 600 s: close() must
        # break it itself, not wait for the server's next heartbeat.
        stream.close()
    assert stream.ended
    assert stream.error is None  # closed by us, not broken
    assert [e.event for _, e in stream.received] == ["heartbeat"]
