"""adapters/http.py: the host of a URL and the one JSON POST with its error mapping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from e2ee_ops.adapters.http import host_of, http_client, post_json
from e2ee_ops.errors import ActionFailed, AuthError, MaybeDelivered, UnreachableError

URL = "https://user:pw@hooks.example.test:8443/services/secret-path?key=k"


def test_host_of_keeps_host_and_port_only() -> None:
    assert host_of(URL) == "hooks.example.test:8443"
    assert host_of("http://api.test/") == "api.test"
    assert host_of("redis://", default="localhost", default_port=6379) == "localhost:6379"
    assert host_of("not a url") == "?"


@pytest.mark.parametrize(
    ("answer", "error", "said"),
    [
        (httpx.Response(401), AuthError, "the hook at X refused the test (HTTP 401)"),
        (httpx.Response(503), ActionFailed, "the hook at X answered HTTP 503"),
        (
            httpx.ConnectTimeout("slow"),
            UnreachableError,
            "the hook at X did not accept a connection within 2 s",
        ),
        (
            httpx.ReadTimeout("slow"),
            MaybeDelivered,
            "the hook at X did not answer within 2 s after the test was sent",
        ),
        (httpx.ConnectError("down"), UnreachableError, "cannot reach the hook at X (ConnectError)"),
    ],
)
@respx.mock
def test_post_json_maps_every_failure_to_one_error(answer: Any, error: type, said: str) -> None:
    respx.post(URL).mock(side_effect=[answer])
    with http_client(timeout=2) as http, pytest.raises(error) as failed:
        post_json(http, URL, {"a": 1}, what="the hook at X", timeout=2, sending="the test")
    assert str(failed.value).startswith(said)
    assert "secret-path" not in str(failed.value) and "pw" not in str(failed.value)


@respx.mock
def test_post_json_sends_json_and_never_follows_a_redirect() -> None:
    route = respx.post(URL).respond(200, json={"ok": True})
    with http_client(timeout=2) as http:
        assert post_json(http, URL, {"a": 1}, what="x", timeout=2).json() == {"ok": True}
    assert route.calls.last.request.content == b'{"a":1}'
    respx.post(URL).respond(302, headers={"location": "https://elsewhere.test/"})
    with http_client(timeout=2) as http, pytest.raises(ActionFailed, match="answered HTTP 302"):
        post_json(http, URL, {"a": 1}, what="x", timeout=2)
