"""What every chat-webhook POST needs: Slack's escaping of user text, and a retry on
HTTP 429 that waits as long as the server's `Retry-After` asks (within a bound).

Slack, Mattermost and Rocket.Chat read `<!channel>`, `<@U123>` and `<url|text>` in a
message's text as mentions and links: a device or incident name containing them
would page a whole channel. `slack_escape` turns `&`, `<`, `>` into the entities
Slack documents, so such text shows as typed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["post_json", "retry_after_seconds", "slack_escape"]

RETRIES_ON_429 = 3
MAX_RETRY_AFTER_SECONDS = 30.0


def slack_escape(text: str) -> str:
    """`text` with `&`, `<` and `>` escaped as Slack's message formatting requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP date); None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def post_json(
    http: httpx.Client,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """POST `body` as JSON; on 429 wait `Retry-After` (1 s when absent) and try again,
    up to RETRIES_ON_429 times. A wait longer than MAX_RETRY_AFTER_SECONDS is not
    taken: the 429 is returned for the caller to report."""
    response = http.post(url, json=dict(body), headers=dict(headers or {}))
    for _ in range(RETRIES_ON_429):
        if response.status_code != 429:
            break
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        wait = 1.0 if wait is None else wait
        if wait > MAX_RETRY_AFTER_SECONDS:
            break
        sleep(wait)
        response = http.post(url, json=dict(body), headers=dict(headers or {}))
    return response
