"""`alerts check` against the real reference server, in states that trip each threshold."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psycopg

from e2ee_ops.dburl import libpq_url
from tests.integration.reference.streams import StreamCollector
from tests.support.cli import cli

EXIT_CODE = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def check(config: Path, sample: float | None = None, **thresholds: float):  # type: ignore[no-untyped-def]
    env = {f"E2EE_OPS_THRESHOLDS__{k.upper()}": str(v) for k, v in thresholds.items()}
    if sample is not None:
        env["E2EE_OPS_ALERTS__SAMPLE_INTERVAL_SECONDS"] = str(sample)
    result = cli("--config", str(config), "--output", "json", "alerts", "check", env=env)
    assert "Traceback" not in result.stderr
    by_name = {f["name"].rsplit(" (", 1)[0]: f for f in result.json["findings"]}
    return result.exit_code, by_name


def test_pools_identity_and_prekey_age_trip_their_thresholds(
    ops_config, users, database_url
) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    _, carol = users.new("carol")
    alice.register_device("roomy", prekeys=50)
    code, found = check(ops_config)
    assert found["otpk pool min"]["status"] == "OK"
    assert found["identity changes per user per day"]["status"] == "OK"
    assert found["signed prekey age max"]["status"] == "OK"

    low = alice.register_device("low", prekeys=3)["device_id"]
    changer = carol.register_device("changer", prekeys=50)["device_id"]
    for _ in range(3):
        carol.change_identity(changer)
    carol.upload_prekeys(changer, 50)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '100 days'"
            " WHERE device_id = %s",
            (low,),
        )
    code, found = check(ops_config)
    assert code == 2
    assert found["otpk pool min"]["status"] == "CRITICAL"
    assert found["otpk pool min"]["value"] == 3
    assert found["identity changes per user per day"]["status"] == "CRITICAL"
    assert found["identity changes per user per day"]["value"] == 3
    assert found["signed prekey age max"]["status"] == "WARNING"

    # The config's thresholds decide, not the server's: critical below 2, warning below 4.
    _, found = check(ops_config, otpk_critical=2, otpk_warning=4, identity_changes_per_day=3)
    assert found["otpk pool min"]["status"] == "WARNING"
    assert found["identity changes per user per day"]["status"] == "OK"


def test_latency_and_pubsub_lag_trip_low_thresholds(ops_config, users, reference_server) -> None:  # type: ignore[no-untyped-def]
    bob_id, bob = users.new("bob")
    _, dan = users.new("dan")
    bob_device = bob.register_device("phone", prekeys=50)["device_id"]
    dan_device = dan.register_device("phone", prekeys=50)["device_id"]
    token = users.admin.issue_token(bob_id)
    collector = StreamCollector(reference_server.url, token, bob_device).start()
    result: list[tuple[int, dict]] = []  # type: ignore[type-arg]
    try:
        time.sleep(0.5)  # let the stream open before sending
        conv = dan.open_conversation(bob_id)
        dan.send(conv, dan_device, bob_id)
        assert collector.wait_for(lambda evs: any(e.event == "message" for e in evs), 10)
        # Latency is a rate now: deliveries must happen between the check's two samples.
        checker = threading.Thread(
            target=lambda: result.append(
                check(
                    ops_config,
                    delivery_p99_ms=0.0001,
                    pubsub_lag_seconds=0.0000001,
                    sample=1.5,
                )
            )
        )
        checker.start()
        while checker.is_alive():
            dan.send(conv, dan_device, bob_id)
            time.sleep(0.1)
        checker.join()
    finally:
        collector.close()
    [(code, found)] = result
    assert found["delivery p99"]["status"] == "WARNING"
    assert found["pub/sub lag"]["status"] == "WARNING"
    # The exit code is the worst finding's: at least the two warnings above.
    worst = max(EXIT_CODE[f["status"]] for f in found.values())
    assert code == worst and code >= 1


def test_redis_down_is_critical_once_dated_past_the_threshold(
    ops_config, users, reference_server, controllable_redis
) -> None:  # type: ignore[no-untyped-def]
    bob_id, bob = users.new("bob")
    _, dan = users.new("dan")
    bob.register_device("phone", prekeys=50)
    dan_device = dan.register_device("phone", prekeys=50)["device_id"]
    conv = dan.open_conversation(bob_id)
    controllable_redis.stop()
    dan.send(conv, dan_device, bob_id)  # stored, not pushed: it dates nothing
    deadline = time.monotonic() + 15
    while "e2ee_redis_up 0.0" not in httpx.get(f"{reference_server.url}/metrics").text:
        assert time.monotonic() < deadline, "the server never noticed Redis was down"
        time.sleep(0.2)
    # The server's own record dates it (e2ee_redis_unavailable_seconds), and says so.
    code, found = check(ops_config, redis_down_seconds=0.001)
    assert code == 2
    down = next(f for n, f in found.items() if n.startswith("redis down"))
    assert down["status"] == "CRITICAL" and down["value"] > 0
    assert "the server's own record" in down["summary"]
    _, found = check(ops_config, redis_down_seconds=3600)
    down = next(f for n, f in found.items() if n.startswith("redis down"))
    assert down["status"] == "WARNING"


def test_error_and_sse_rates_are_measured_between_two_samples_not_since_start(
    ops_config, reference_server
) -> None:  # type: ignore[no-untyped-def]
    # Errors before the check: in the totals since start, not in the rates it measures.
    for _ in range(5):
        httpx.get(f"{reference_server.url}/dm/metrics", headers={"Authorization": "Bearer x"})
    code, found = check(ops_config)
    errors = found["http error rate"]
    assert errors["status"] == "OK" and "sampled twice" in errors["summary"]
    assert not any(errors["value"].values()), errors  # nothing failed during the interval
    sse = found["sse failure rate"]
    assert "no SSE connection was opened (over 0.2 s: /metrics sampled twice)" in sse["summary"]
    result = cli("--config", str(ops_config), "--output", "json", "alerts", "check")
    assert "sampled twice, 0.2 s apart" in result.json["data"]["rates_from"]


class PrometheusApi:
    """A local HTTP server answering Prometheus's `GET /api/v1/query` with fixed vectors,
    chosen by the metric the query names; it records every query."""

    def __init__(self, vectors: dict[str, list[tuple[dict[str, str], float]]]) -> None:
        import json as json_
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        queries: list[str] = []
        self.queries = queries

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = parse_qs(urlsplit(self.path).query)["query"][0]
                queries.append(query)
                [rows] = [v for name, v in vectors.items() if f"({name}[" in query]
                body = json_.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [
                                {"metric": labels, "value": [0, str(value)]}
                                for labels, value in rows
                            ],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rates_come_from_prometheus_when_it_is_configured(
    tmp_path, reference_server, clean_db, admin_token
) -> None:  # type: ignore[no-untyped-def]
    from tests.support.config import write_ops_config

    instance = {"instance": reference_server.url.removeprefix("http://")}
    prometheus = PrometheusApi(
        {
            "e2ee_sse_connects_total": [(instance, 2.0)],
            "e2ee_sse_failures_total": [(instance, 1.0)],
            "e2ee_delivery_latency_seconds_bucket": [
                ({**instance, "le": "0.1"}, 1.0),
                ({**instance, "le": "+Inf"}, 1.0),
            ],
            "e2ee_http_errors_total": [({**instance, "status": "500"}, 0.25)],
        }
    )
    try:
        config = write_ops_config(
            tmp_path,
            reference_server.url,
            clean_db,
            admin_token,
            prometheus={"url": prometheus.url, "rate_window": "10m"},
        )
        result = cli("--config", str(config), "--output", "json", "alerts", "check")
    finally:
        prometheus.close()
    assert result.exit_code == 2, result.stdout + result.stderr
    found = {f["name"].rsplit(" (", 1)[0]: f for f in result.json["findings"]}
    sse = found["sse failure rate"]
    assert sse["status"] == "CRITICAL" and sse["value"] == 0.5
    assert "rate over 10m from Prometheus" in sse["summary"]
    assert found["http error rate"]["value"] == {"500": 0.25}
    assert result.json["data"]["rates_from"].startswith("Prometheus at 127.0.0.1:")
    assert any("rate(e2ee_sse_failures_total[10m])" in q for q in prometheus.queries)
