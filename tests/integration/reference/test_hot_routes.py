"""Sends and acks served outside FastAPI's routing (`hot_routes`) answer exactly as the
routes do: same status, body and headers for every success and every refusal, and
anything not plainly well-formed reaches the routes themselves, its body intact."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2ee_ops.reference.app import create_app
from e2ee_ops.reference.hot_routes import HotRoutes
from e2ee_ops.reference.settings import ServerSettings
from e2ee_ops.reference.state import AppState

from .servers import own_server, pair_on

MAX_BODY = 4096
SENDS_ALLOWED = 12  # per sender and window: the transcript ends on its 429

Exchange = tuple[str, int, dict[str, str], Any]


def _normalized(response: httpx.Response, names: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body with what differs between two runs (ids, times) named."""
    text = response.text
    for value, name in names.items():
        text = text.replace(value, name)
    text = re.sub(r'"message_id":\d+', '"message_id":"<message>"', text)
    text = re.sub(r'"created_at":"[^"]*"', '"created_at":"<time>"', text)
    text = re.sub(r'"retry_in_seconds":\d+', '"retry_in_seconds":"<s>"', text)
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    if "retry-after" in headers:
        headers["retry-after"] = "<s>"
    assert int(response.headers["content-length"]) == len(response.content)
    return response.status_code, headers, json.loads(text)


def _transcript(server_url: str, admin_token: str, server: Any) -> list[Exchange]:
    """The same requests, good and bad, against one server; what each got back."""
    exchanges: list[Exchange] = []
    with pair_on(server, admin_token) as pair, httpx.Client(base_url=server_url) as http:
        alice, bob = pair["alice"], pair["bob"]
        conv, a_dev, b_dev = pair["conv"], pair["a_dev"], pair["b_dev"]
        alice_id = next(m for m in alice.conversations()[0]["members"] if m != pair["bob_id"])
        as_alice = {"Authorization": alice.http.headers["Authorization"]}
        as_bob = {"Authorization": bob.http.headers["Authorization"]}
        names = {
            str(b_dev): "<b_dev>",
            str(a_dev): "<a_dev>",
            f"conversation {conv}": "conversation <conv>",
        }
        send_path = f"/dm/conversations/{conv}/messages"
        ack_path = f"/dm/devices/{b_dev}/ack"

        def message(client_id: str, **envelope: Any) -> dict[str, Any]:
            return {
                "sender_device_id": a_dev,
                "client_message_id": client_id,
                "envelopes": [
                    {"device_id": b_dev, "bundle_version": 1, "ciphertext": "eA=="} | envelope
                ],
            }

        def call(what: str, path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
            response = http.post(path, headers=headers, **kwargs)
            exchanges.append((what, *_normalized(response, names)))
            return response

        first = call("send", send_path, as_alice, json=message("m1")).json()["message_id"]
        call("retry", send_path, as_alice, json=message("m1"))
        call("stale bundle", send_path, as_alice, json=message("m2", bundle_version=2))
        call("bad base64", send_path, as_alice, json=message("m3", ciphertext="%%%"))
        call("not a recipient's device", send_path, as_alice, json=message("m4", device_id=a_dev))
        call("no conversation", "/dm/conversations/999999999999/messages", as_alice,
             json=message("m5"))  # fmt: skip
        call("id with a leading zero", f"/dm/conversations/0{conv}/messages", as_alice,
             json=message("m6"))  # fmt: skip
        call("not JSON", send_path, as_alice | {"Content-Type": "application/json"}, content=b"{")
        call("no envelopes", send_path, as_alice, json=message("m7") | {"envelopes": []})
        call("no content type", send_path, as_alice, content=json.dumps(message("m8")).encode())
        call("JSON with a charset", send_path,
             as_alice | {"Content-Type": "application/json; charset=utf-8"},
             content=json.dumps(message("m9")).encode())  # fmt: skip
        call("no token", send_path, {}, json=message("m10"))
        call("unknown token", send_path, {"Authorization": "Bearer e2ee_nope"}, json=message("x"))
        call("lower-case scheme", send_path,
             {"Authorization": as_alice["Authorization"].replace("Bearer", "bearer")},
             json=message("m11"))  # fmt: skip
        call("over the body limit, chunked", send_path,
             as_alice | {"Content-Type": "application/json"},
             content=iter([b'{"envelopes": "', b"x" * MAX_BODY, b'"}']))  # fmt: skip

        call("ack up_to", ack_path, as_bob, json={"up_to": first})
        call("ack ids", ack_path, as_bob, json={"message_ids": [first]})
        call("ack both", ack_path, as_bob, json={"message_ids": [first], "up_to": first})
        call("ack of another's device", ack_path, as_alice, json={"up_to": first})
        call("ack, upper-case device id", f"/dm/devices/{str(b_dev).upper()}/ack", as_bob,
             json={"up_to": first})  # fmt: skip

        bob.request("POST", "/dm/blocks", json={"user_id": alice_id})
        call("blocked by the recipient", send_path, as_alice, json=message("m12"))
        bob.request("DELETE", f"/dm/blocks/{alice_id}")
        for n in range(SENDS_ALLOWED + 1):
            answer = http.post(send_path, headers=as_alice, json=message(f"burst-{n}"))
            if answer.status_code == 429:
                exchanges.append(("rate limited", *_normalized(answer, names)))
                break
    return exchanges


@pytest.fixture
def fleet_env() -> dict[str, str]:
    return {
        "E2EE_RATE_LIMIT_MESSAGES": str(SENDS_ALLOWED),
        "E2EE_MAX_BODY_BYTES": str(MAX_BODY),
    }


def test_sends_and_acks_answer_the_same_with_and_without_the_hot_routes(
    database_url, redis_url, workdir, admin_token, fleet_env
) -> None:  # type: ignore[no-untyped-def]
    transcripts = []
    for hot in ("1", "0"):
        for server in own_server(
            database_url, redis_url, workdir, E2EE_HOT_ROUTES=hot, **fleet_env
        ):
            transcripts.append(_transcript(server.url, admin_token, server))
    hot, routed = transcripts
    assert hot == routed
    assert [(what, status) for what, status, _, _ in hot] == [
        ("send", 201),
        ("retry", 200),
        ("stale bundle", 409),
        ("bad base64", 422),
        ("not a recipient's device", 404),
        ("no conversation", 404),
        ("id with a leading zero", 201),
        ("not JSON", 422),
        ("no envelopes", 422),
        ("no content type", 422),
        ("JSON with a charset", 201),
        ("no token", 401),
        ("unknown token", 401),
        ("lower-case scheme", 201),
        ("over the body limit, chunked", 413),
        ("ack up_to", 200),
        ("ack ids", 200),
        ("ack both", 422),
        ("ack of another's device", 404),
        ("ack, upper-case device id", 200),
        ("blocked by the recipient", 403),
        ("rate limited", 429),
    ]
    assert hot[0][2] == {"content-type": "application/json", "server": "uvicorn"}
    assert hot[-1][2]["retry-after"] == "<s>"


# ---- what is served here, and what is passed on ---------------------------------------


class Recorder:
    """The application behind `HotRoutes`: records what reaches it, answers 299."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def in_process(database_url, redis_url) -> Iterator[tuple[AppState, Recorder]]:  # type: ignore[no-untyped-def]
    state: AppState = create_app(ServerSettings(database_url, redis_url)).state.e2ee
    yield state, Recorder()


def test_well_formed_sends_and_acks_are_served_and_the_rest_passed_on_intact(
    pair, in_process
) -> None:  # type: ignore[no-untyped-def]
    state, recorder = in_process
    token = pair["bob_token"]
    alice_token = pair["alice"].http.headers["Authorization"].split()[1]
    send_path = f"/dm/conversations/{pair['conv']}/messages"
    ack_path = f"/dm/devices/{pair['b_dev']}/ack"
    good = json.dumps(
        {
            "sender_device_id": pair["a_dev"],
            "client_message_id": "in-process",
            "envelopes": [{"device_id": pair["b_dev"], "bundle_version": 1, "ciphertext": "eA=="}],
        }
    ).encode()
    plain = {"Content-Type": "application/json"}

    async def scenario() -> list[tuple[str, int]]:
        await state.store.open()
        transport = httpx.ASGITransport(app=HotRoutes(recorder, state))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://hot") as http:
                requests = [
                    (send_path, f"Bearer {alice_token}", plain, good),
                    (ack_path, f"Bearer {token}", plain, b'{"up_to": 1}'),
                    (send_path, f"bearer {alice_token}", plain, good),
                    (send_path, "Bearer e2ee_unknown", plain, good),
                    (send_path, f"Bearer {alice_token}", {"Content-Type": "text/plain"}, good),
                    (send_path, f"Bearer {alice_token}", plain, good[:-1]),
                    (
                        f"/dm/conversations/0{pair['conv']}/messages",
                        f"Bearer {alice_token}",
                        plain,
                        good,
                    ),  # fmt: skip
                    (
                        f"/dm/devices/{str(pair['b_dev']).upper()}/ack",
                        f"Bearer {token}",
                        plain,
                        b'{"up_to": 1}',
                    ),  # fmt: skip
                    (ack_path, f"Bearer {token}", plain, b'{"up_to": 0}'),
                ]
                answers = []
                for path, authorization, headers, body in requests:
                    answer = await http.post(
                        path, headers={"Authorization": authorization} | headers, content=body
                    )
                    answers.append((path, answer.status_code))
                return answers
        finally:
            await state.store.close()
            await state.relay.client.aclose()

    answers = asyncio.run(scenario())
    assert [status for _, status in answers] == [201, 200] + [299] * 7
    assert [body for _, body in recorder.seen] == [
        good,
        good,
        good,
        good[:-1],
        good,
        b'{"up_to": 1}',
        b'{"up_to": 0}',
    ]


def test_the_openapi_document_is_the_same_with_and_without_the_hot_routes(
    database_url, redis_url
) -> None:  # type: ignore[no-untyped-def]
    hot, routed = (
        create_app(ServerSettings(database_url, redis_url, hot_routes=on)).openapi()
        for on in (True, False)
    )
    assert hot == routed
    assert {"/dm/conversations/{conversation_id}/messages", "/dm/devices/{device_id}/ack"} <= set(
        hot["paths"]
    )
