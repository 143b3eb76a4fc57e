"""Announcing incidents: a Slack-compatible webhook and PagerDuty Events API v2.

Both are one JSON POST with a timeout. The webhook URL and the routing key are
secrets: errors name only the host, never the URL's path or the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from e2ee_ops.adapters.http import host_of, http_client, post_json
from e2ee_ops.adapters.slack import slack_escape
from e2ee_ops.secret import Secret


def _post(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout: float,
    transport: httpx.BaseTransport | None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    with http_client(timeout=timeout, transport=transport) as http:
        return post_json(
            http,
            url,
            body,
            what=host_of(url),
            timeout=timeout,
            sending="the notification",
            sleep=sleep,
        )


def post_webhook(
    url: Secret,
    text: str,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST Slack's `{"text": ...}` shape, which Mattermost, Rocket.Chat and others accept;
    the text is escaped, so `<!channel>` in an incident title pages nobody."""
    _post(
        url.reveal(),
        {"text": slack_escape(text)},
        timeout=timeout,
        transport=transport,
        sleep=sleep,
    )


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
