"""A Prometheus server's HTTP query API (`GET /api/v1/query`): instant vectors only.

Where the service is scraped by Prometheus (the usual production setup), rates over
its own window come from there rather than from two samples taken by e2ee-ops.
"""

from __future__ import annotations

from typing import Any

import httpx

from e2ee_ops.adapters.http import host_of, http_client
from e2ee_ops.errors import ServiceError, TimedOutError, UnreachableError

Vector = list[tuple[dict[str, str], float]]


class PrometheusQuery:
    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.host = host_of(url, default_port=9090)
        self.timeout = timeout
        self._http = http_client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def query(self, expr: str) -> Vector:
        """The instant vector `expr` evaluates to now: (labels, value) per series."""
        try:
            answer = self._http.get(f"{self.url}/api/v1/query", params={"query": expr})
        except httpx.TimeoutException:
            raise TimedOutError(
                f"Prometheus at {self.host} did not answer within {self.timeout:g} s",
                host=self.host,
            ) from None
        except httpx.HTTPError:
            raise UnreachableError(
                f"cannot reach Prometheus at {self.host}",
                host=self.host,
                hint="check prometheus.url",
            ) from None
        try:
            body: Any = answer.json()
        except ValueError:
            body = None
        if answer.status_code != 200 or not isinstance(body, dict):
            raise ServiceError(f"Prometheus at {self.host} answered HTTP {answer.status_code}")
        if body.get("status") != "success":
            raise ServiceError(f"Prometheus at {self.host} refused the query: {body.get('error')}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise ServiceError(f"Prometheus at {self.host} did not answer an instant vector")
        vector: Vector = []
        for row in data.get("result") or []:
            try:
                labels = {str(k): str(v) for k, v in (row.get("metric") or {}).items()}
                vector.append((labels, float(row["value"][1])))
            except (KeyError, IndexError, TypeError, ValueError):
                raise ServiceError(
                    f"Prometheus at {self.host} answered a malformed sample"
                ) from None
        return vector
