"""Announcing incidents: a Slack-compatible webhook and PagerDuty Events API v2.

Both are one JSON POST with a timeout. The webhook URL and the routing key are
secrets: errors name only the host, never the URL's path or the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from e2ee_ops import __version__
from e2ee_ops.errors import ServiceError, TimedOutError, UnreachableError
from e2ee_ops.secret import Secret


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def _post(
    url: str, body: Mapping[str, Any], *, timeout: float, transport: httpx.BaseTransport | None
) -> httpx.Response:
    host = _host(url)
    try:
        with httpx.Client(
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": f"e2ee-ops/{__version__}"},
        ) as http:
            response = http.post(url, json=dict(body))
    except httpx.TimeoutException:
        raise TimedOutError(f"{host} did not answer within {timeout:g} s", host=host) from None
    except httpx.HTTPError as exc:
        raise UnreachableError(
            f"could not reach {host} ({type(exc).__name__})", host=host
        ) from None
    if response.status_code >= 300:
        raise ServiceError(
            f"{host} refused the notification (HTTP {response.status_code})",
            status_code=response.status_code,
        )
    return response


def post_webhook(
    url: Secret,
    text: str,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """POST Slack's `{"text": ...}` shape, which Mattermost, Rocket.Chat and others accept."""
    _post(url.reveal(), {"text": text}, timeout=timeout, transport=transport)


def pagerduty_event(
    events_url: str,
    routing_key: Secret,
    *,
    action: str,
    dedup_key: str,
    summary: str | None = None,
    severity: str = "critical",
    source: str = "e2ee-ops",
    details: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Send one Events v2 event (`trigger` or `resolve`); returns the dedup_key PagerDuty kept."""
    body: dict[str, Any] = {
        "routing_key": routing_key.reveal(),
        "event_action": action,
        "dedup_key": dedup_key,
    }
    if action == "trigger":
        body["payload"] = {
            "summary": (summary or dedup_key)[:1024],  # PagerDuty's limit
            "source": source,
            "severity": severity,
            "custom_details": dict(details or {}),
        }
    response = _post(events_url, body, timeout=timeout, transport=transport)
    try:
        kept = response.json().get("dedup_key")
    except ValueError:
        kept = None
    return str(kept or dedup_key)
