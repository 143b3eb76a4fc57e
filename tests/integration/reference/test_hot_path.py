"""The server's per-message work stays cheap without changing what clients see: no
request goes through the thread pool, a gone client's stream closes at once, the hot
routes keep their answers, and several worker processes serve one port as a fleet."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference import routes_admin, routes_dm, routes_e2ee, routes_ops
from e2ee_ops.reference.client import ReferenceClient
from e2ee_ops.reference.relay import CHANNEL

from .servers import last_seen, own_server, pair_on
from .streams import StreamCollector

HOT_ROUTES = {
    "/dm/conversations/{conversation_id}/messages",
    "/dm/devices/{device_id}/stream",
    "/dm/devices/{device_id}/ack",
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    """FastAPI awaits a coroutine function on the event loop; anything else (a plain
    function, a class whose __call__ is plain) goes through its thread pool."""
    if inspect.iscoroutinefunction(call):
        return True
    method = getattr(call, "__call__", None)  # noqa: B004 - the instance's own method
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(method)


def test_no_endpoint_or_dependency_runs_in_the_thread_pool() -> None:
    routes = [
        route
        for module in (routes_ops, routes_admin, routes_e2ee, routes_dm)
        for route in module.router.routes
        if isinstance(route, APIRoute)
    ]
    in_pool = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', type(call).__qualname__)}"
            for route in routes
            for call in _calls(route.dependant)
            if not _runs_on_the_loop(call)
        }
    )
    paths = {route.path for route in routes}
    assert HOT_ROUTES <= paths
    assert in_pool == []


# ---- the stream ------------------------------------------------------------------


@pytest.fixture
def quiet_pair(database_url, redis_url, workdir, admin_token) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    for server in own_server(database_url, redis_url, workdir, E2EE_HEARTBEAT_SECONDS="3600"):
        with (
            pair_on(server, admin_token) as pair,
            ReferenceClient(server.url, admin_token) as admin,
        ):
            yield pair | {"admin": admin}


def _sse_counts(admin: ReferenceClient) -> tuple[float, float]:
    sse = admin.request("GET", "/live-chat/metrics")["sse"]
    return sse["connections"], sse["disconnects_total"]


def test_a_stream_whose_client_went_away_closes_long_before_its_next_heartbeat(
    quiet_pair,
) -> None:  # type: ignore[no-untyped-def]
    pair = quiet_pair
    stream = pair["bob"].stream(pair["b_dev"])
    assert next(stream).event == "heartbeat"  # the opening one; the next is an hour away
    assert _sse_counts(pair["admin"]) == (1, 0)
    stream.close()  # the client goes away
    deadline = time.monotonic() + 10
    while _sse_counts(pair["admin"]) != (0, 1):
        assert time.monotonic() < deadline, "the server kept the stream of a gone client"
        time.sleep(0.05)


# ---- sending -----------------------------------------------------------------------


def _send_raw(pair: dict[str, Any], client_message_id: str, bundle_version: int) -> httpx.Response:
    response: httpx.Response = pair["alice"].http.post(
        f"/dm/conversations/{pair['conv']}/messages",
        json={
            "sender_device_id": pair["a_dev"],
            "client_message_id": client_message_id,
            "envelopes": [
                {"device_id": pair["b_dev"], "bundle_version": bundle_version, "ciphertext": "eA=="}
            ],
        },
    )
    return response


def test_a_retry_after_the_recipient_rotated_its_bundle_is_still_the_first_message(
    pair, database_url
) -> None:  # type: ignore[no-untyped-def]
    first = _send_raw(pair, "sent-once", 1)
    assert first.status_code == 201 and first.json()["duplicate"] is False
    assert pair["bob"].rotate_signed_prekey(pair["b_dev"]) == 2
    again = _send_raw(pair, "sent-once", 1)  # the client's retry, encrypted to version 1
    assert again.status_code == 200
    assert again.json() == first.json() | {"duplicate": True, "relayed": True}
    fresh = _send_raw(pair, "not-sent-before", 1)  # a new message to the old version
    assert fresh.status_code == 409
    assert fresh.json() == {
        "detail": f"device {pair['b_dev']} has bundle version 2",
        "code": "BUNDLE_STALE",
    }
    with psycopg.connect(libpq_url(database_url)) as conn:
        stored = conn.execute(
            "SELECT m.client_message_id, count(e.*), count(d.*) FROM dm_messages m"
            " JOIN dm_envelopes e ON e.message_id = m.id"
            " JOIN dm_delivery d ON d.message_id = m.id GROUP BY 1"
        ).fetchall()
    assert stored == [("sent-once", 1, 1)]


# ---- several workers on one port ----------------------------------------------------


def _subscribers(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.pubsub_numsub(CHANNEL)[0][1])


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_workers_share_the_port_relay_to_each_other_and_stop_with_their_supervisor(
    database_url, redis_url, workdir, admin_token
) -> None:  # type: ignore[no-untyped-def]
    before = _subscribers(redis_url)
    servers = own_server(database_url, redis_url, workdir, E2EE_WORKERS="2")
    server = next(servers)
    _until(lambda: _subscribers(redis_url) == before + 2, "two workers did not subscribe")
    with pair_on(server, admin_token) as pair:
        bob_token = pair["bob"].http.headers["Authorization"].split()[1]
        stream = StreamCollector(server.url, bob_token, pair["b_dev"]).start()
        sent = []
        for _ in range(6):  # each on a new connection, to whichever worker accepts it
            alice_token = pair["alice"].http.headers["Authorization"].split()[1]
            with ReferenceClient(server.url, alice_token) as alice:
                sent.append(alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"])
        _until(lambda: stream.message_ids() == sent, "the stream did not get every message")
        next(servers, None)  # SIGTERM to the supervisor
        _until(stream.ended.is_set, "the stream did not end")
        last = stream.snapshot()[-1]
        assert (last.event, last.data) == ("closing", {"reason": "server shutting down"})
        stream.close()
    _until(lambda: _subscribers(redis_url) == before, "a worker outlived its supervisor")


# ---- acknowledging ---------------------------------------------------------------


def test_an_ack_of_another_users_device_is_404_and_leaves_it_unseen(pair, database_url) -> None:  # type: ignore[no-untyped-def]
    message_id = pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"]
    seen = last_seen(database_url, pair["b_dev"])
    for body in ({"up_to": message_id}, {"message_ids": [message_id]}):
        answer = pair["alice"].http.post(f"/dm/devices/{pair['b_dev']}/ack", json=body)
        assert answer.status_code == 404
        assert answer.json() == {"detail": f"no device {pair['b_dev']}"}
    assert last_seen(database_url, pair["b_dev"]) == seen
    assert pair["bob"].ack(pair["b_dev"], [message_id]) == 1  # still pending for bob
