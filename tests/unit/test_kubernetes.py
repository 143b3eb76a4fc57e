"""Kubernetes as a restart target and as the list of API instances, against a stand-in
`kubectl` on PATH that records its arguments and answers as kubectl does."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2ee_ops.adapters.kubernetes import service_urls
from e2ee_ops.adapters.restarter import Restarter, RestartSpec
from e2ee_ops.cli import targets
from e2ee_ops.config import load_config
from e2ee_ops.context import AppContext
from e2ee_ops.errors import ActionFailed, ConfigError, UnreachableError

STUB = Path(__file__).resolve().parents[1] / "support" / "kubectl_stub.py"
ENDPOINTS = {
    "kind": "Endpoints",
    "subsets": [
        {
            "addresses": [{"ip": "10.1.0.7"}, {"ip": "10.1.0.9"}],
            "notReadyAddresses": [{"ip": "10.1.0.11"}],
            "ports": [{"port": 8000}],
        }
    ],
}


class Kubectl:
    def __init__(self, record: Path) -> None:
        self.record = record

    def calls(self) -> list[list[str]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def mode(self, mode: str) -> None:
        os.environ["KUBECTL_MODE"] = mode


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kubectl]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "kubectl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECTL_RECORD", str(tmp_path / "kubectl.jsonl"))
    monkeypatch.setenv("KUBECTL_ENDPOINTS", json.dumps(ENDPOINTS))
    monkeypatch.setenv("KUBECTL_MODE", "ok")
    yield Kubectl(tmp_path / "kubectl.jsonl")


def k8s(**values: object) -> RestartSpec:
    defaults: dict[str, object] = {"name": "api", "namespace": "e2ee", "timeout_seconds": 60.0}
    return RestartSpec("kubernetes", **{**defaults, **values})  # type: ignore[arg-type]


def test_restart_is_rollout_restart_then_rollout_status_with_the_time_left(
    kubectl: Kubectl,
) -> None:
    result = Restarter("api", k8s(context="prod"), monotonic=lambda: 100.0).restart()
    assert kubectl.calls() == [
        ["--context", "prod", "--namespace", "e2ee", "rollout", "restart", "deployment/api"],
        [
            "--context", "prod", "--namespace", "e2ee",
            "rollout", "status", "deployment/api", "--timeout=60s",
        ],
    ]  # fmt: skip
    assert result.commands == (
        "kubectl --context prod --namespace e2ee rollout restart deployment/api",
        "kubectl --context prod --namespace e2ee rollout status deployment/api --timeout=60s",
    )
    assert 'deployment "api" successfully rolled out' in result.output_tail


def test_a_statefulset_and_the_run_deadline_cut_the_wait(kubectl: Kubectl) -> None:
    spec = k8s(kind="statefulset", name="redis")
    Restarter("redis", spec, monotonic=lambda: 0.0, remaining=lambda: 12.5).restart()
    assert kubectl.calls()[0] == ["--namespace", "e2ee", "rollout", "restart", "statefulset/redis"]
    assert kubectl.calls()[1][-1] == "--timeout=12s"


def test_the_plan_shows_both_commands() -> None:
    assert Restarter("api", k8s()).describe() == (
        "kubectl --namespace e2ee rollout restart deployment/api, then "
        "kubectl --namespace e2ee rollout status deployment/api --timeout=60s"
    )


def test_a_rollout_that_does_not_finish_fails_with_kubectls_own_words(kubectl: Kubectl) -> None:
    kubectl.mode("stuck")
    with pytest.raises(ActionFailed) as caught:
        Restarter("api", k8s(), monotonic=lambda: 0.0, remaining=lambda: 1.0).restart()
    assert caught.value.message == (
        "restarting api with `kubectl --namespace e2ee rollout status deployment/api "
        "--timeout=1s` failed (exit 1: error: timed out waiting for the condition)"
    )


def test_a_missing_deployment_stops_before_waiting(kubectl: Kubectl) -> None:
    kubectl.mode("missing")
    with pytest.raises(ActionFailed, match=r"exit 1: Error from server \(NotFound\): deployments"):
        Restarter("api", k8s(), monotonic=lambda: 0.0).restart()
    assert len(kubectl.calls()) == 1  # no rollout status after a failed restart


def test_no_time_left_for_the_wait_is_a_timeout_not_a_zero_second_wait(kubectl: Kubectl) -> None:
    from e2ee_ops.errors import TimedOutError

    with pytest.raises(TimedOutError, match="left no time for `kubectl rollout status`"):
        Restarter("api", k8s(), monotonic=lambda: 0.0, remaining=lambda: 0.5).restart()


def test_service_endpoints_are_the_ready_addresses(kubectl: Kubectl) -> None:
    urls = service_urls("e2ee-api", namespace="e2ee", port=8000, context="prod")
    assert urls == ["http://10.1.0.7:8000", "http://10.1.0.9:8000"]
    assert kubectl.calls() == [
        ["--context", "prod", "--namespace", "e2ee", "get", "endpoints", "e2ee-api",
         "--output", "json"],
    ]  # fmt: skip


def test_a_missing_service_or_no_ready_pod_is_unreachable(
    kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubectl.mode("missing")
    with pytest.raises(UnreachableError, match=r"failed \(exit 1: Error from server \(NotFound\)"):
        service_urls("e2ee-api", namespace="e2ee", port=8000)
    kubectl.mode("ok")
    monkeypatch.setenv("KUBECTL_ENDPOINTS", json.dumps({"kind": "Endpoints", "subsets": []}))
    with pytest.raises(UnreachableError, match="has no ready endpoints"):
        service_urls("e2ee-api", namespace="e2ee", port=8000)


def test_no_kubectl_on_path_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="needs kubectl, which is not on PATH"):
        service_urls("e2ee-api", namespace="e2ee", port=8000)


def test_doctor_targets_every_pod_behind_the_service(kubectl: Kubectl, tmp_path: Path) -> None:
    config = tmp_path / "e2ee-ops.yaml"
    config.write_text(
        "api:\n  discover:\n    kubernetes: {service: e2ee-api, namespace: e2ee, port: 8000}\n"
        "redis: {url: 'redis://127.0.0.1:1/0'}\n"
        "tokens: {admin: {env: ADMIN_TOKEN}}\n"
    )
    env = AppContext.create(
        environ={"HOME": str(tmp_path), "ADMIN_TOKEN": "adm-TOKEN-1"},
        cwd=tmp_path,
        config_file=config,
    )
    try:
        hosts = [api.host for api in targets.doctor_targets(env).public_apis]
        assert hosts == ["10.1.0.7:8000", "10.1.0.9:8000"]
        targets.api_clients(env, None)
        assert len(kubectl.calls()) == 1  # asked once per command
    finally:
        env.resources.close()


def test_config_needs_a_name_for_kubernetes_and_one_way_to_the_instances(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("services:\n  api:\n    restart: {method: kubernetes}\n")
    with pytest.raises(ConfigError, match="method kubernetes needs name"):
        load_config(config_file=config, environ={"HOME": str(tmp_path)}, cwd=tmp_path)
    config.write_text(
        "api:\n  base_urls: ['http://a:1']\n  discover: {kubernetes: {service: s, port: 80}}\n"
    )
    with pytest.raises(ConfigError, match="either base_urls or discover"):
        load_config(config_file=config, environ={"HOME": str(tmp_path)}, cwd=tmp_path)


def test_the_config_becomes_the_kubectl_restart(tmp_path: Path) -> None:
    config = tmp_path / "e2ee-ops.yaml"
    config.write_text(
        "services:\n  redis:\n    restart:\n      method: kubernetes\n      kind: statefulset\n"
        "      name: redis\n      namespace: data\n      context: prod\n      timeout_seconds: 90\n"
    )
    env = AppContext.create(environ={"HOME": str(tmp_path)}, cwd=tmp_path, config_file=config)
    assert targets.restarter(env, "redis").describe() == (
        "kubectl --context prod --namespace data rollout restart statefulset/redis, then "
        "kubectl --context prod --namespace data rollout status statefulset/redis --timeout=90s"
    )
