from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from e2ee_ops.adapters.api import DM_DISABLED_CODE, ApiClient
from e2ee_ops.config import Secret
from e2ee_ops.errors import (
    AuthError,
    E2eeOpsError,
    RefusedError,
    ServiceError,
    TimedOutError,
    UnreachableError,
)

BASE = "http://api.test:8000"
TOKEN = "tok_TestOnly_9f8e7d6c5b4a"


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[ApiClient]:
    with ApiClient(
        BASE, token=Secret(TOKEN), timeout=2, retries=2, sleep=sleeps.append
    ) as api_client:
        yield api_client


def assert_no_token(exc: BaseException) -> None:
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc)


def test_get_sends_the_bearer_token_and_parses_json(
    api: respx.MockRouter, client: ApiClient
) -> None:
    route = api.get("/dm/metrics").respond(200, json={"redis_status": "ok"})
    assert client.dm_metrics() == {"redis_status": "ok"}
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(client)


def test_path_segments_are_percent_encoded(api: respx.MockRouter, client: ApiClient) -> None:
    route = api.get("/admin/users/a%2Fb%3Fc").respond(200, json={"account_id": "a/b?c"})
    client.get_user("a/b?c")
    assert route.call_count == 1
    assert route.calls.last.request.url.raw_path == b"/admin/users/a%2Fb%3Fc"


def test_health_returns_503_as_a_result(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/health").respond(
        503, json={"status": "degraded", "database": "unavailable", "redis": "ok"}
    )
    health = client.health()
    assert health.http_status == 503 and health.database == "unavailable"


def test_get_retries_5xx_with_backoff_then_succeeds(
    api: respx.MockRouter, client: ApiClient, sleeps: list[float]
) -> None:
    route = api.get("/live-chat/metrics")
    route.side_effect = [
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(200, json={"relay_lag": False}),
    ]
    assert client.live_chat_metrics() == {"relay_lag": False}
    assert route.call_count == 3
    assert sleeps == [0.2, 0.4]


def test_get_gives_up_after_retries_naming_the_status(
    api: respx.MockRouter, client: ApiClient
) -> None:
    route = api.get("/dm/metrics").respond(500, json={"detail": "boom"})
    with pytest.raises(ServiceError, match="api.test:8000 failed GET /dm/metrics with HTTP 500"):
        client.dm_metrics()
    assert route.call_count == 3


def test_post_is_never_retried(api: respx.MockRouter, client: ApiClient) -> None:
    route = api.post("/dm/conversations/c1/messages").respond(503)
    with pytest.raises(ServiceError) as caught:
        client.send_message(
            "c1", sender_device_id="d1", client_message_id="m1", envelopes=[{"device_id": "d2"}]
        )
    assert route.call_count == 1
    assert caught.value.status_code == 503
    assert_no_token(caught.value)


def test_connect_errors_are_retried_for_get_then_unreachable(
    api: respx.MockRouter, client: ApiClient
) -> None:
    route = api.get("/e2ee/devices").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(UnreachableError, match="cannot connect to the API at api.test:8000") as c:
        client.list_devices()
    assert route.call_count == 3 and c.value.host == "api.test:8000"
    assert_no_token(c.value)


def test_timeouts_become_timed_out(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/dm/conversations").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TimedOutError, match="did not answer GET /dm/conversations within 2 s") as c:
        client.list_conversations()
    assert_no_token(c.value)


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (401, {"detail": "missing or invalid bearer token"}, AuthError, None),
        (403, {"detail": "admin scope required"}, AuthError, None),
        (403, {"detail": "E2EE DM is not enabled"}, RefusedError, DM_DISABLED_CODE),
        (403, {"detail": "blocked", "code": "USER_BLOCKED"}, RefusedError, "USER_BLOCKED"),
        (404, {"detail": "unknown user"}, RefusedError, None),
        (
            409,
            {"detail": "no prekeys", "code": "PREKEYS_EXHAUSTED"},
            RefusedError,
            "PREKEYS_EXHAUSTED",
        ),
        (409, {"detail": "stale", "code": "BUNDLE_STALE"}, RefusedError, "BUNDLE_STALE"),
        (409, {"detail": "revoked", "code": "DEVICE_REVOKED"}, RefusedError, "DEVICE_REVOKED"),
    ],
)
def test_status_codes_map_to_errors(
    api: respx.MockRouter,
    client: ApiClient,
    status: int,
    body: dict[str, str],
    error: type[E2eeOpsError],
    code: str | None,
) -> None:
    route = api.post("/dm/conversations").respond(status, json=body)
    with pytest.raises(error) as caught:
        client.create_conversation("peer")
    assert route.call_count == 1
    exc = caught.value
    assert exc.status_code == status  # type: ignore[attr-defined]
    if isinstance(exc, RefusedError):
        assert exc.code == code and exc.body == body and exc.detail == body["detail"]
    assert body["detail"] in exc.sentence
    assert_no_token(exc)


def test_429_carries_retry_in_seconds(api: respx.MockRouter, client: ApiClient) -> None:
    api.post("/dm/devices/d1/ack").respond(
        429,
        json={"detail": "rate limit exceeded", "retry_in_seconds": 7},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(RefusedError, match="retry in 7 s") as caught:
        client.ack("d1", [1, 2])
    assert caught.value.retry_in_seconds == 7.0 and caught.value.status_code == 429


def test_429_falls_back_to_retry_after(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/dm/devices/d1/messages").respond(429, text="slow down", headers={"Retry-After": "3"})
    with pytest.raises(RefusedError) as caught:
        client.poll("d1")
    assert caught.value.retry_in_seconds == 3.0


def test_malformed_json_is_a_clear_error(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/dm/metrics").respond(
        200, text="<html>login</html>", headers={"content-type": "text/html"}
    )
    with pytest.raises(ServiceError, match="not JSON .*text/html"):
        client.dm_metrics()


def test_server_echoing_the_token_does_not_leak_it(
    api: respx.MockRouter, client: ApiClient
) -> None:
    api.get("/dm/metrics").respond(401, json={"detail": f"token {TOKEN} unknown"})
    with pytest.raises(AuthError) as caught:
        client.dm_metrics()
    assert_no_token(caught.value)


def test_poll_ack_block_and_devices(api: respx.MockRouter, client: ApiClient) -> None:
    poll = api.get("/dm/devices/d1/messages").respond(200, json={"messages": [], "relay_lag": True})
    assert client.poll("d1", after=5, limit=10)["relay_lag"] is True
    assert dict(poll.calls.last.request.url.params) == {"after": "5", "limit": "10"}
    api.post("/dm/devices/d1/ack").respond(200, json={"acknowledged": 2})
    assert client.ack("d1", [1, 2]) == 2
    block = api.post("/admin/users/u1/block").respond(200, json={"blocked": True})
    assert client.block_user("u1", reason="spam")["blocked"] is True
    assert json.loads(block.calls.last.request.content) == {"reason": "spam"}
    api.delete("/admin/users/u1/block").respond(200, json={"blocked": False})
    assert client.unblock_user("u1")["blocked"] is False
    api.get("/e2ee/users/u1/devices").respond(200, json={"devices": [{"device_id": "d1"}]})
    assert client.user_devices("u1") == [{"device_id": "d1"}]
    api.get("/metrics").respond(200, text="# HELP x\nx 1\n")
    assert "x 1" in client.prometheus_metrics()


SSE_BODY = (
    'event: heartbeat\ndata: {"relay_lag": false, "redis_status": "ok", "ts": 1}\n\n'
    'event: message\nid: 42\ndata: {"message_id": 42, "conversation_id": "c1"}\n\n'
    'event: closing\ndata: {"reason": "server shutting down"}\n\n'
)


def test_stream_yields_parsed_events(api: respx.MockRouter, client: ApiClient) -> None:
    route = api.get("/dm/devices/d1/stream").respond(
        200, text=SSE_BODY, headers={"content-type": "text/event-stream"}
    )
    events = list(client.stream("d1", deadline_seconds=5, last_event_id="41"))
    assert [e.event for e in events] == ["heartbeat", "message", "closing"]
    assert events[1].id == "42" and events[1].data["message_id"] == 42
    assert events[0].data["relay_lag"] is False
    assert route.calls.last.request.headers["Last-Event-ID"] == "41"


def test_stream_stops_at_the_deadline(api: respx.MockRouter) -> None:
    ticks = iter([0.0, 10.0, 20.0, 30.0])
    with ApiClient(BASE, token=Secret(TOKEN), monotonic=lambda: next(ticks)) as client:
        api.get("/dm/devices/d1/stream").respond(
            200, text=SSE_BODY, headers={"content-type": "text/event-stream"}
        )
        events = list(client.stream("d1", deadline_seconds=5))
    assert [e.event for e in events] == ["heartbeat"]


def test_stream_read_timeout_ends_quietly(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/dm/devices/d1/stream").mock(side_effect=httpx.ReadTimeout("no events"))
    assert list(client.stream("d1", deadline_seconds=0.1)) == []


def test_stream_errors(api: respx.MockRouter, client: ApiClient) -> None:
    api.get("/dm/devices/d1/stream").respond(
        409, json={"detail": "revoked", "code": "DEVICE_REVOKED"}
    )
    with pytest.raises(RefusedError) as caught:
        list(client.stream("d1", deadline_seconds=1))
    assert caught.value.code == "DEVICE_REVOKED"

    api.get("/dm/devices/d2/stream").respond(200, json={"not": "sse"})
    with pytest.raises(ServiceError, match="event stream"):
        list(client.stream("d2", deadline_seconds=1))

    api.get("/dm/devices/d3/stream").respond(
        200, text="event: message\ndata: {oops\n\n", headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(ServiceError, match="'message' event whose data is not JSON"):
        list(client.stream("d3", deadline_seconds=1))


def test_event_stream_handle_waits_for_what_arrives_and_how_it_ends(
    api: respx.MockRouter, client: ApiClient
) -> None:
    route = api.get("/dm/devices/d1/stream").respond(
        200, text=SSE_BODY, headers={"content-type": "text/event-stream"}
    )
    with client.open_stream("d1", lifetime_seconds=30) as stream:
        assert stream.wait_for(lambda s: 42 in s.message_ids(), 5)
        assert stream.wait_for(lambda s: s.ended, 5)
        # Ended without it: False at once, whatever the deadline.
        assert not stream.wait_for(lambda s: 43 in s.message_ids(), 3600)
        assert stream.opened and stream.saw("closing") and stream.error is None
        assert [e.event for _, e in stream.received] == ["heartbeat", "message", "closing"]
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
