"""What every adapter that talks HTTP or names a server shares: the host of a URL (for
messages: never its credentials or path, which can be secret) and one JSON POST with one
mapping of failures to the error tree."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from e2ee_ops import __version__
from e2ee_ops.errors import ActionFailed, AuthError, MaybeDelivered, UnreachableError

if TYPE_CHECKING:
    import httpx


RETRIES_ON_429 = 3
MAX_RETRY_AFTER_SECONDS = 30.0


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP date); None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    # Imported here: the email package is about 3 ms of every command's start-up, and
    # only an HTTP-date Retry-After needs it.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def host_of(url: str, *, default: str = "?", default_port: int | None = None) -> str:
    """`host:port` (or `host`) of `url`: no user, password, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or default
    port = parts.port or default_port
    return f"{host}:{port}" if port else host


def http_client(
    *, timeout: float, transport: httpx.BaseTransport | None = None, base_url: str = ""
) -> httpx.Client:
    """An HTTP client that names itself and never follows a redirect (a redirect could
    carry a token to another host)."""
    import httpx

    return httpx.Client(
        base_url=base_url,
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
        headers={"User-Agent": f"e2ee-ops/{__version__}"},
    )


def post_json(
    http: httpx.Client,
    url: str,
    body: Mapping[str, Any],
    *,
    what: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    sending: str = "the request",
    hint: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """POST `body` as JSON; `what` names the receiver in errors ("the webhook endpoint at
    HOST"). On HTTP 429 wait what `Retry-After` asks (1 s without it) and try again, up
    to RETRIES_ON_429 times, unless the wait is over MAX_RETRY_AFTER_SECONDS. No connection
    (or none in time) is UnreachableError; a timeout once the request went out is
    MaybeDelivered (the receiver may have acted on it); HTTP 401/403 AuthError (with
    `hint`), any other answer from 300 up (a 429 still refused too) ActionFailed."""
    import httpx

    host = host_of(url)
    try:
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
    except httpx.ConnectTimeout:
        raise UnreachableError(
            f"{what} did not accept a connection within {timeout:g} s", host=host
        ) from None
    except httpx.TimeoutException:
        # The request may have reached the receiver: it could have acted on it.
        raise MaybeDelivered(
            f"{what} did not answer within {timeout:g} s after {sending} was sent", host=host
        ) from None
    except httpx.HTTPError as exc:
        raise UnreachableError(f"cannot reach {what} ({type(exc).__name__})", host=host) from None
    if response.status_code in (401, 403):
        raise AuthError(
            f"{what} refused {sending} (HTTP {response.status_code})",
            status_code=response.status_code,
            hint=hint,
        )
    if response.status_code >= 300:
        raise ActionFailed(f"{what} answered HTTP {response.status_code}")
    return response
