"""The runbook's check after `rollback flag --disable`, over real HTTP: only the exact
403 `{"detail": "E2EE DM is not enabled"}` proves DM is off; any other answer fails it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from e2ee_ops.adapters.api import ApiClient
from e2ee_ops.procedures.rollback_flag import _check_conversations
from e2ee_ops.secret import Secret


class Canned:
    """A local HTTP server answering GET /dm/conversations with a set status and body."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"conversations": []}
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                payload = json.dumps(canned.body).encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def canned() -> Iterator[tuple[Canned, ApiClient]]:
    server = Canned()
    api = ApiClient(server.url, token=Secret("user-token-for-tests"), retries=0, timeout=5)
    yield server, api
    api.close()
    server.close()


def test_the_exact_disabled_body_passes(canned) -> None:  # type: ignore[no-untyped-def]
    server, api = canned
    server.status, server.body = 403, {"detail": "E2EE DM is not enabled"}
    assert _check_conversations(api, enable=False) is None


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "blocked", "code": "USER_BLOCKED"},
        {"detail": "E2EE DM is not enabled", "code": "USER_BLOCKED"},
        {"detail": "E2EE DM is not enabled."},
        {"detail": "e2ee dm is not enabled"},
    ],
    ids=["another-refusal", "extra-key", "other-punctuation", "other-case"],
)
def test_a_403_with_another_body_fails_the_verification(canned, body: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    server, api = canned
    server.status, server.body = 403, body
    problem = _check_conversations(api, enable=False)
    if "code" in body:  # a refusal with a code of its own: the body is quoted back
        assert problem == f"{api.host} answered HTTP 403 {body!r}"
    else:  # no code and not the flag's sentence: a token refused, said as such
        assert problem is not None and problem.startswith(f"API at {api.host} refused ")
        assert f"(HTTP 403: {body['detail']})" in problem


def test_200_while_disabling_fails_and_while_enabling_passes(canned) -> None:  # type: ignore[no-untyped-def]
    server, api = canned
    server.status, server.body = 200, {"conversations": [{"conversation_id": "c1"}]}
    assert _check_conversations(api, enable=False) == (
        f"{api.host} still answers 200 with 1 conversation(s)"
    )
    assert _check_conversations(api, enable=True) is None


def test_the_disabled_body_while_enabling_fails(canned) -> None:  # type: ignore[no-untyped-def]
    server, api = canned
    server.status, server.body = 403, {"detail": "E2EE DM is not enabled"}
    assert _check_conversations(api, enable=True) == (
        f"{api.host} answered HTTP 403 {{'detail': 'E2EE DM is not enabled'}}"
    )
