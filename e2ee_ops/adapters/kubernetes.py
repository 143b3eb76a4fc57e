"""Kubernetes through `kubectl`, the operator's own client and credentials.

Only what the toolkit needs: the addresses behind a Service (`kubectl get endpoints`),
so every API pod can be checked. Restarts (`kubectl rollout restart/status`) live in
the restarter. Every call runs without a shell, in its own process group, with a
deadline; a failure is one sentence naming the command and kubectl's own last line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from e2ee_ops.adapters.process import run_process
from e2ee_ops.errors import ConfigError, ServiceError, TimedOutError, UnreachableError


def kubectl_prefix(namespace: str, context: str | None) -> list[str]:
    """`kubectl [--context C] --namespace NS`: the start of every kubectl call."""
    return ["kubectl", *(["--context", context] if context else []), "--namespace", namespace]


def endpoints_argv(service: str, namespace: str, context: str | None) -> list[str]:
    return [*kubectl_prefix(namespace, context), "get", "endpoints", service, "--output", "json"]


def service_urls(
    service: str,
    *,
    namespace: str,
    port: int,
    context: str | None = None,
    scheme: str = "http",
    timeout: float = 10.0,
) -> list[str]:
    """`scheme://IP:port` of every ready address behind the Service, in kubectl's order."""
    argv = endpoints_argv(service, namespace, context)
    shown = " ".join(argv)
    try:
        done = run_process(argv, timeout=timeout)
    except FileNotFoundError as exc:
        raise ConfigError(
            "api.discover.kubernetes needs kubectl, which is not on PATH",
            hint="install kubectl or list api.base_urls instead",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TimedOutError(f"`{shown}` did not answer within {timeout:g} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        raise UnreachableError(
            f"`{shown}` failed (exit {done.returncode}: {lines[-1] if lines else 'no output'})",
            host=f"service {namespace}/{service}",
            hint="check the Service name, the namespace and the kubectl context",
        )
    try:
        body: dict[str, Any] = json.loads(done.stdout)
    except ValueError as exc:
        raise ServiceError(f"`{shown}` did not print JSON") from exc
    urls = [
        f"{scheme}://{_host(address['ip'])}:{port}"
        for subset in body.get("subsets") or []
        for address in _addresses(subset)
    ]
    if not urls:
        raise UnreachableError(
            f"service {namespace}/{service} has no ready endpoints (`{shown}`)",
            host=f"service {namespace}/{service}",
            hint="no API pod is ready: check `kubectl get pods`",
        )
    return urls


def _addresses(subset: dict[str, Any]) -> Sequence[dict[str, Any]]:
    addresses = subset.get("addresses") or []
    return [a for a in addresses if isinstance(a, dict) and a.get("ip")]


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
