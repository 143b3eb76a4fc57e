"""The service's HTTP API (docs/reference-api.md): one client per API instance.

Every call has a timeout. Reads (GET) are retried with exponential backoff on
connection errors and 5xx answers; writes never are, since a retried POST could
send a message twice. Failures become the e2ee-ops error tree:

    connect error            -> UnreachableError naming the host
    timeout                  -> TimedOutError
    401, 403 (scope)         -> AuthError
    403 with a code, 403 "E2EE DM is not enabled", other 4xx, 409, 429
                             -> RefusedError(code, detail, retry_in_seconds, body)
    5xx, unreadable answers  -> ServiceError

The bearer token lives only in the request header: it is never part of a message,
a repr or a URL.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import httpx_sse

from e2ee_ops.adapters.api_models import HealthAnswer, HeartbeatData, RelayAnswer, check_answer
from e2ee_ops.adapters.bounded import iter_sse_until, read_capped
from e2ee_ops.adapters.http import host_of, http_client
from e2ee_ops.errors import (
    AnswerTooLarge,
    AuthError,
    DeadlinePassed,
    E2eeOpsError,
    RefusedError,
    ServiceError,
    TimedOutError,
    UnreachableError,
)
from e2ee_ops.secret import Secret

DM_DISABLED_DETAIL = "E2EE DM is not enabled"
# Code given to the refusal above, which has no code of its own in the body.
DM_DISABLED_CODE = "E2EE_DM_DISABLED"
MAX_BACKOFF_SECONDS = 5.0
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Health:
    """`GET /health`; `http_status` is 503 when the database is down."""

    http_status: int
    status: str
    database: str
    redis: str
    e2ee_dm_enabled: bool | None
    version: str | None
    instance_id: str | None


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: `message`, `heartbeat` or `closing`."""

    event: str
    id: str | None
    data: dict[str, Any]


class ApiClient:
    """Calls to one API instance (`base_url`) with one token (or none)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: Secret | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        backoff_seconds: float = 0.2,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = host_of(base_url, default=base_url)
        self.timeout = timeout
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self._token = token
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        self._transport = transport
        self._http = http_client(timeout=timeout, transport=transport, base_url=self.base_url)
        self._stream_socket: socket.socket | None = None  # the open stream's, while reading

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r}, token={'set' if self._token else 'none'})"

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def abort_stream(self) -> None:
        """Wake a `stream` read blocked in another thread at once: shut its socket down.
        Closing the client alone leaves that read blocked until the server's next byte
        (a heartbeat, seconds away)."""
        sock = self._stream_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ----------------------------------------------------------------- ops

    def health(self) -> Health:
        response = self._send("GET", "/health", accept_statuses=(503,))
        body = self._checked(HealthAnswer, self._json(response, "GET /health"), "GET /health")
        return Health(
            http_status=response.status_code,
            status=str(body.get("status", "unknown")),
            database=str(body.get("database", "unknown")),
            redis=str(body.get("redis", "unknown")),
            e2ee_dm_enabled=body.get("e2ee_dm_enabled"),
            version=body.get("version"),
            instance_id=body.get("instance_id"),
        )

    def prometheus_metrics(self) -> str:
        """`GET /metrics`: Prometheus text exposition."""
        return self._send("GET", "/metrics").text

    def dm_metrics(self) -> dict[str, Any]:
        """`GET /dm/metrics` (admin): pools, message stats, latency, SSE, errors."""
        return self._checked(RelayAnswer, self._get_json("/dm/metrics"), "GET /dm/metrics")

    def live_chat_metrics(self) -> dict[str, Any]:
        """`GET /live-chat/metrics` (admin): redis_status, relay_lag, pubsub lag, SSE."""
        what = "GET /live-chat/metrics"
        return self._checked(RelayAnswer, self._get_json("/live-chat/metrics"), what)

    # ----------------------------------------------------------------- devices

    def list_devices(self) -> list[dict[str, Any]]:
        """The token owner's devices with pools, prekey ages and last_seen_at."""
        return _list(self._get_json("/e2ee/devices"), "devices")

    def user_devices(self, account_id: str) -> list[dict[str, Any]]:
        """A user's active devices: device_id, bundle_version, identity_key."""
        return _list(self._get_json(_path("/e2ee/users/{}/devices", account_id)), "devices")

    # ----------------------------------------------------------------- messages

    def list_conversations(self) -> list[dict[str, Any]]:
        return _list(self._get_json("/dm/conversations"), "conversations")

    def create_conversation(self, peer_user_id: str) -> dict[str, Any]:
        """Create (201) or fetch (200) the conversation with `peer_user_id`."""
        return self._post_json("/dm/conversations", {"peer_user_id": peer_user_id})

    def send_message(
        self,
        conversation_id: str,
        *,
        sender_device_id: str,
        client_message_id: str,
        envelopes: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Store and publish; returns message_id, created_at, relayed, duplicate."""
        return self._post_json(
            _path("/dm/conversations/{}/messages", conversation_id),
            {
                "sender_device_id": sender_device_id,
                "client_message_id": client_message_id,
                "envelopes": [dict(e) for e in envelopes],
            },
        )

    def poll(
        self, device_id: str, *, after: str | int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """Unacknowledged messages for a device: {"messages": [...], "relay_lag": bool}."""
        params: dict[str, str | int] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        return self._get_json(_path("/dm/devices/{}/messages", device_id), params=params)

    def ack(self, device_id: str, message_ids: Sequence[str | int]) -> int:
        """Acknowledge delivery; returns how many were acknowledged."""
        body = self._post_json(
            _path("/dm/devices/{}/ack", device_id), {"message_ids": list(message_ids)}
        )
        return int(body.get("acknowledged", 0))

    def stream(
        self,
        device_id: str,
        *,
        deadline_seconds: float,
        last_event_id: str | None = None,
    ) -> Iterator[SseEvent]:
        """Yield SSE events for a device until `deadline_seconds` pass or the server closes.

        Reaching the deadline ends the iteration quietly; the caller decides whether
        that is a failure (e.g. a canary message that never arrived).
        """
        path = _path("/dm/devices/{}/stream", device_id)
        what = f"GET {path}"
        end = self._monotonic() + deadline_seconds
        headers = self._headers()
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        # Reads block at most until the deadline; heartbeats wake us up between.
        timeout = httpx.Timeout(self.timeout, read=max(deadline_seconds, 0.001))
        try:
            with httpx_sse.connect_sse(
                self._http, "GET", path, headers=headers, timeout=timeout
            ) as source:
                self._stream_socket = _socket_of(source.response)
                if source.response.status_code >= 400:
                    body = read_capped(
                        source.response, cap=self.max_response_bytes, deadline=end,
                        monotonic=self._monotonic,
                    )  # fmt: skip
                    self._raise_for_status(_buffered(source.response, body), what)
                events = iter_sse_until(
                    source.response,
                    deadline=end,
                    cap=self.max_response_bytes,
                    monotonic=self._monotonic,
                )
                for sse in events:
                    data = self._sse_data(sse)
                    if sse.event == "heartbeat":
                        data = self._checked(HeartbeatData, data, f"a heartbeat of {what}")
                    yield SseEvent(event=sse.event, id=sse.id or None, data=data)
                    if self._monotonic() >= end:
                        return
        except (httpx.ReadTimeout, DeadlinePassed):
            return  # no (complete) event arrived before the deadline
        except AnswerTooLarge:
            raise ServiceError(
                f"API at {self.host} sent more than {self.max_response_bytes} bytes on {what}",
                hint="raise api.max_response_bytes if that is expected",
            ) from None
        except httpx_sse.SSEError as exc:
            raise ServiceError(
                f"API at {self.host} did not answer {what} with an event stream ({exc})"
            ) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, what) from exc
        finally:
            self._stream_socket = None

    def open_stream(self, device_id: str, *, lifetime_seconds: float) -> EventStream:
        """Open `device_id`'s SSE stream on a connection of its own, read in the
        background for at most `lifetime_seconds`; close the handle when done."""
        own = ApiClient(
            self.base_url,
            token=self._token,
            timeout=self.timeout,
            retries=self.retries,
            max_response_bytes=self.max_response_bytes,
            transport=self._transport,
            monotonic=self._monotonic,
        )
        return EventStream(own, device_id, lifetime_seconds=lifetime_seconds)

    # ----------------------------------------------------------------- admin

    def get_user(self, account_id: str) -> dict[str, Any]:
        return self._get_json(_path("/admin/users/{}", account_id))

    def block_user(self, account_id: str, *, reason: str) -> dict[str, Any]:
        return self._post_json(_path("/admin/users/{}/block", account_id), {"reason": reason})

    def unblock_user(self, account_id: str) -> dict[str, Any]:
        path = _path("/admin/users/{}/block", account_id)
        return self._json(self._send("DELETE", path), f"DELETE {path}")

    # ----------------------------------------------------------------- plumbing

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {self._token.reveal()}"}

    def _get_json(
        self, path: str, *, params: Mapping[str, str | int] | None = None
    ) -> dict[str, Any]:
        return self._json(self._send("GET", path, params=params), f"GET {path}")

    def _post_json(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json(self._send("POST", path, json=body), f"POST {path}")

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Mapping[str, Any] | None = None,
        accept_statuses: Sequence[int] = (),
    ) -> httpx.Response:
        what = f"{method} {path}"
        attempts = 1 + (self.retries if method == "GET" else 0)  # only reads are idempotent
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._request(method, path, params=params, json=json)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise self._transport_error(exc, what) from exc
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, what) from exc
            else:
                if response.status_code in accept_statuses or response.status_code < 400:
                    return response
                if response.status_code < 500 or last:
                    self._raise_for_status(response, what)
            self._sleep(min(self._backoff * 2**attempt, MAX_BACKOFF_SECONDS))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        json: Mapping[str, Any] | None,
    ) -> httpx.Response:
        """One request whose whole answer must arrive within the timeout and the size cap
        (httpx's timeouts bound each read; a dripping or endless body defeats them)."""
        request = self._http.build_request(
            method, path, params=params, json=json, headers=self._headers()
        )
        what = f"{method} {path}"
        deadline = self._monotonic() + self.timeout
        response = self._http.send(request, stream=True)
        try:
            body = read_capped(
                response, cap=self.max_response_bytes, deadline=deadline, monotonic=self._monotonic
            )
        except AnswerTooLarge:
            raise ServiceError(
                f"API at {self.host} answered {what} with more than "
                f"{self.max_response_bytes} bytes",
                hint="raise api.max_response_bytes if the answer is expected to be that big",
            ) from None
        except DeadlinePassed:
            raise TimedOutError(
                f"API at {self.host} did not finish answering {what} within {self.timeout:g} s",
                host=self.host,
                hint="check the service's load, or raise api.timeout_seconds",
            ) from None
        finally:
            response.close()
        return _buffered(response, body)

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> E2eeOpsError:
        if isinstance(exc, httpx.TimeoutException):
            return TimedOutError(
                f"API at {self.host} did not answer {what} within {self.timeout:g} s",
                host=self.host,
                hint="check the service's load, or raise api.timeout_seconds",
            )
        if isinstance(exc, httpx.ConnectError | httpx.NetworkError):
            return UnreachableError(
                f"cannot connect to the API at {self.host} ({type(exc).__name__})",
                host=self.host,
                hint="check that the service runs and api.base_urls is right",
            )
        return ServiceError(
            f"API at {self.host} broke the connection during {what} ({type(exc).__name__})"
        )

    def _raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        body = _body_or_none(response)
        detail = str(body.get("detail")) if isinstance(body, dict) and "detail" in body else None
        code = body.get("code") if isinstance(body, dict) else None
        said = f": {detail}" if detail else ""
        if status >= 500:
            raise ServiceError(
                f"API at {self.host} failed {what} with HTTP {status}{said}",
                status_code=status,
                hint="check the service's logs",
            )
        if status == 401:
            raise AuthError(
                f"API at {self.host} rejected the token for {what} (HTTP 401{said})",
                status_code=status,
                hint="check that the configured token exists and is current",
            )
        if status == 403 and detail == DM_DISABLED_DETAIL:
            code = code or DM_DISABLED_CODE
        if status == 403 and code is None:
            raise AuthError(
                f"API at {self.host} refused {what} for this token (HTTP 403{said})",
                status_code=status,
                hint="use a token with the needed scope (admin endpoints need tokens.admin)",
            )
        retry_in = _retry_in_seconds(response, body) if status == 429 else None
        wait = f"; retry in {retry_in:g} s" if retry_in is not None else ""
        raise RefusedError(
            f"API at {self.host} refused {what} with HTTP {status}"
            + (f" {code}" if code else "")
            + said
            + wait,
            status_code=status,
            code=code,
            detail=detail,
            retry_in_seconds=retry_in,
            body=body,
        )

    def _checked(self, model: Any, body: dict[str, Any], what: str) -> dict[str, Any]:
        """`body` validated against the answer's model: an answer that does not fit is
        unreadable (UNKNOWN), never read as something it did not say."""
        try:
            return check_answer(model, body)
        except ValueError as exc:
            raise ServiceError(
                f"API at {self.host} answered {what} with an unreadable answer ({exc})",
                hint="check that api.base_urls points at the E2EE DM service",
            ) from None

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise ServiceError(
                f"API at {self.host} answered {what} with something that is not JSON "
                f"(HTTP {response.status_code}, {response.headers.get('content-type', '?')})",
                status_code=response.status_code,
                hint="check that api.base_urls points at the E2EE DM service",
            ) from exc
        if not isinstance(body, dict):
            raise ServiceError(
                f"API at {self.host} answered {what} with JSON that is not an object",
                status_code=response.status_code,
            )
        return body

    def _sse_data(self, sse: httpx_sse.ServerSentEvent) -> dict[str, Any]:
        if not sse.data:
            return {}
        try:
            data = json.loads(sse.data)
        except ValueError as exc:
            raise ServiceError(
                f"API at {self.host} sent a {sse.event!r} event whose data is not JSON"
            ) from exc
        return data if isinstance(data, dict) else {"value": data}


class EventStream:
    """One device's SSE stream, read in the background: what arrived, when, and how it
    ended. `wait_for` blocks until a condition on it holds; `close` ends it."""

    def __init__(self, client: ApiClient, device_id: str, *, lifetime_seconds: float) -> None:
        self.host = client.host
        self.device_id = device_id
        self.lifetime_seconds = lifetime_seconds
        self.received: list[tuple[float, SseEvent]] = []  # (monotonic time, event)
        self.ended = False
        self.error: BaseException | None = None  # why it ended, when not by the server
        self._closing = False
        self._client = client
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"sse-{self.host}")
        self._thread.start()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def opened(self) -> bool:
        """The server sent something: the stream is established."""
        return bool(self.received)

    def saw(self, event: str) -> bool:
        return any(e.event == event for _, e in self.received)

    def message_ids(self) -> list[int]:
        return [int(e.data.get("message_id", 0)) for _, e in self.received if e.event == "message"]

    def wait_for(self, predicate: Callable[[EventStream], bool], deadline_seconds: float) -> bool:
        """Whether `predicate(self)` holds within `deadline_seconds`; False as soon as the
        stream has ended without it."""
        with self._changed:
            return self._changed.wait_for(
                lambda: predicate(self) or self.ended, timeout=max(deadline_seconds, 0.0)
            ) and predicate(self)

    def close(self) -> None:
        """End the stream and its reader: shutting the socket down breaks the read at once."""
        self._closing = True
        self._client.abort_stream()
        self._client.close()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        started = time.monotonic()
        try:
            for event in self._client.stream(
                self.device_id, deadline_seconds=self.lifetime_seconds
            ):
                with self._changed:
                    self.received.append((time.monotonic(), event))
                    self._changed.notify_all()
            if not self.saw("closing") and time.monotonic() - started >= self.lifetime_seconds:
                self.error = TimeoutError("the stream was still open at its deadline")
        except BaseException as exc:  # noqa: BLE001 - kept for the caller
            if not self._closing:  # a read broken by close() is not how the stream ended
                self.error = exc
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()


def _socket_of(response: httpx.Response) -> socket.socket | None:
    """The socket under an HTTP/1.1 response, when the transport exposes one."""
    stream = response.extensions.get("network_stream")
    get_extra_info = getattr(stream, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    return sock if isinstance(sock, socket.socket) else None


def _buffered(response: httpx.Response, body: bytes) -> httpx.Response:
    """`response` with the body read (bounded) already; the headers that described the
    wire form (encoding, length) are dropped, since `body` is decoded."""
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def _path(template: str, *values: str | int) -> str:
    """Fill path segments, percent-encoding each one."""
    return template.format(*(quote(str(v), safe="") for v in values))


def _list(body: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key)
    if not isinstance(items, list):
        raise ServiceError(f"the API's answer has no {key!r} list")
    return items


def _body_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _retry_in_seconds(response: httpx.Response, body: Any) -> float | None:
    if isinstance(body, dict) and isinstance(body.get("retry_in_seconds"), int | float):
        return float(body["retry_in_seconds"])
    header = response.headers.get("Retry-After", "")
    try:
        return float(header)
    except ValueError:
        return None
