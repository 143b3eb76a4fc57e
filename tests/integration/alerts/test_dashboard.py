"""`alerts dashboard`: every panel's query is PromQL that promtool accepts and reads only
metrics a live reference server exports on /metrics; thresholds come from the config."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from e2ee_ops.config import Thresholds
from e2ee_ops.procedures.alerts_dashboard import dashboard_json, panels
from tests.support.cli import cli

COMMITTED = Path(__file__).resolve().parents[3] / "alerts" / "e2ee_dm.dashboard.json"

# Words in a PromQL expression that are not metric names.
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "and", "or", "unless", "on", "ignoring",
    "max", "min", "avg", "without", "le", "job", "instance", "status", "code",
}  # fmt: skip


def _exported(metrics_text: str) -> set[str]:
    """Every sample name /metrics can carry, also for families with no sample yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def _identifiers(expr: str) -> set[str]:
    """Metric-like words of `expr`: label matchers, durations and numbers removed."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|\bby \([^)]*\)", " ", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare))
    return words - PROMQL_WORDS


def test_every_panel_reads_only_metrics_the_server_exports(
    reference_server,  # type: ignore[no-untyped-def]
) -> None:
    exported = _exported(httpx.get(f"{reference_server.url}/metrics", timeout=10).text)
    for panel in panels(Thresholds()):
        for query in panel.queries:
            assert _identifiers(query.expr) == set(query.metrics), (panel.title, query.expr)
            missing = set(query.metrics) - exported
            assert not missing, f"{panel.title}: /metrics has no {sorted(missing)}"


def test_every_panel_query_is_valid_promql(tmp_path: Path, promtool: str) -> None:
    queries = [q.expr for p in panels(Thresholds()) for q in p.queries]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"panel:query{i}", "expr": e} for i, e in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_committed_dashboard_is_the_generated_default() -> None:
    assert COMMITTED.read_text() == dashboard_json(Thresholds())


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("thresholds: {otpk_critical: 3, otpk_warning: 8, delivery_p99_ms: 250}\n")
    out = tmp_path / "dashboard.json"
    result = cli("--config", str(config), "alerts", "dashboard", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    board = json.loads(out.read_text())
    by_title = {p["title"]: p for p in board["panels"]}
    pools = by_title["One-time prekey pools"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert pools == [
        {"color": "red", "value": None},
        {"color": "orange", "value": 3},
        {"color": "green", "value": 8},
    ]
    p99 = by_title["Delivery latency p99"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert p99 == [{"color": "green", "value": None}, {"color": "orange", "value": 0.25}]
    assert {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]} == {
        "${datasource}"
    }
