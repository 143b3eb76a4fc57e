"""What the server saves per message, and that nothing is lost by it: the token cache
(revocations and blocks still take effect at once), the cumulative ack (exactly up to
the id, only what was sent, only this device) and the throttled last_seen_at."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ApiFailure, ReferenceClient, StreamEvent

from .servers import last_seen, own_server, pair_on
from .streams import StreamCollector

UNAUTHORIZED = {"detail": "missing or invalid bearer token"}


def _conversations(base_url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{base_url}/dm/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _new_token(admin: ReferenceClient, account_id: int) -> tuple[int, str]:
    body = admin.request("POST", f"/admin/users/{account_id}/tokens", json={"scope": "user"})
    return int(body["token_id"]), str(body["token"])


# ---- token cache ------------------------------------------------------------------


def test_a_token_revoked_through_the_api_is_refused_at_once_despite_the_cache(
    reference_server, admin, users
) -> None:  # type: ignore[no-untyped-def]
    account_id, _ = users.new("carol")
    token_id, token = _new_token(admin, account_id)
    assert _conversations(reference_server.url, token).status_code == 200  # now cached
    assert admin.revoke_token(token_id) == {"token_id": token_id, "revoked": True}
    refused = _conversations(reference_server.url, token)
    assert refused.status_code == 401
    assert refused.json() == UNAUTHORIZED


def test_only_an_admin_may_revoke_a_token(reference_server, admin, users) -> None:  # type: ignore[no-untyped-def]
    account_id, client = users.new("erin")
    token_id, token = _new_token(admin, account_id)
    url = f"{reference_server.url}/admin/tokens/{token_id}"
    anonymous = httpx.delete(url, timeout=10)
    assert (anonymous.status_code, anonymous.json()) == (401, UNAUTHORIZED)
    as_user = client.http.delete(url)
    assert (as_user.status_code, as_user.json()) == (403, {"detail": "admin scope required"})
    assert _conversations(reference_server.url, token).status_code == 200  # not revoked


def test_revoking_an_unknown_token_is_404(admin) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiFailure) as failure:
        admin.revoke_token(987_654_321)
    assert failure.value.status_code == 404


def test_a_user_blocked_then_unblocked_is_refused_then_served_at_once(
    reference_server, admin, pair
) -> None:  # type: ignore[no-untyped-def]
    alice, alice_id = pair["alice"], _alice_id(pair)  # alice's token now cached
    admin.block(alice_id, "compromised")
    with pytest.raises(ApiFailure) as failure:
        alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])
    assert failure.value.status_code == 403
    assert failure.value.code == "USER_BLOCKED"
    admin.unblock(alice_id)
    assert alice.send(pair["conv"], pair["a_dev"], pair["bob_id"])["duplicate"] is False


def _alice_id(pair: dict[str, Any]) -> int:
    conversation = pair["alice"].conversations()[0]
    return int(next(m for m in conversation["members"] if m != pair["bob_id"]))


@pytest.fixture
def long_cache_server(database_url, redis_url, workdir) -> Iterator[ReferenceServerProcess]:  # type: ignore[no-untyped-def]
    # An hour: only the relay's message can make this instance refuse a revoked token.
    yield from own_server(database_url, redis_url, workdir, E2EE_TOKEN_CACHE_SECONDS="3600")


def test_a_token_revoked_on_one_instance_is_refused_by_another_through_the_relay(
    reference_server, long_cache_server, admin, users
) -> None:  # type: ignore[no-untyped-def]
    account_id, _ = users.new("dave")
    token_id, token = _new_token(admin, account_id)
    assert _conversations(long_cache_server.url, token).status_code == 200  # cached there
    admin.revoke_token(token_id)  # through the first instance
    deadline = time.monotonic() + 10
    while (answer := _conversations(long_cache_server.url, token)).status_code == 200:
        assert time.monotonic() < deadline, "the other instance still accepts the token"
        time.sleep(0.05)
    assert answer.status_code == 401
    assert answer.json() == UNAUTHORIZED


# ---- cumulative ack ---------------------------------------------------------------


def _send(pair: dict[str, Any], count: int) -> list[int]:
    return [
        int(pair["alice"].send(pair["conv"], pair["a_dev"], pair["bob_id"])["message_id"])
        for _ in range(count)
    ]


def _pending(client: ReferenceClient, device_id: str) -> list[int]:
    return [int(m["message_id"]) for m in client.poll(device_id)["messages"]]


def test_ack_up_to_acknowledges_exactly_up_to_the_id(pair) -> None:  # type: ignore[no-untyped-def]
    ids = _send(pair, 4)
    bob, device = pair["bob"], pair["b_dev"]
    assert _pending(bob, device) == ids  # sent to the device by this poll
    assert bob.ack_up_to(device, ids[1]) == 2
    assert _pending(bob, device) == ids[2:]
    assert bob.ack_up_to(device, ids[1]) == 0  # already acknowledged


def test_ack_up_to_leaves_a_message_not_yet_sent_to_the_device_pending(pair) -> None:  # type: ignore[no-untyped-def]
    first, second = _send(pair, 2)
    bob, device = pair["bob"], pair["b_dev"]
    # Only the second was handed over (as when the first commits after it was streamed).
    assert [int(m["message_id"]) for m in bob.poll(device, after=first)["messages"]] == [second]
    assert bob.ack_up_to(device, second) == 1
    assert _pending(bob, device) == [first]


def test_ack_up_to_leaves_a_lower_id_sent_after_the_id_pending(pair) -> None:  # type: ignore[no-untyped-def]
    first, second = _send(pair, 2)
    bob, device = pair["bob"], pair["b_dev"]
    assert [int(m["message_id"]) for m in bob.poll(device, after=first)["messages"]] == [second]
    # The first is handed over only now, after the second (a late commit on a stream).
    assert _pending(bob, device) == [first, second]
    assert bob.ack_up_to(device, second) == 1
    assert _pending(bob, device) == [first]
    assert bob.ack_up_to(device, first) == 1
    assert _pending(bob, device) == []


def test_ack_up_to_leaves_another_devices_messages_untouched(pair) -> None:  # type: ignore[no-untyped-def]
    bob = pair["bob"]
    tablet = bob.register_device("bob-tablet")["device_id"]
    ids = _send(pair, 3)  # one envelope to each of bob's devices
    assert _pending(bob, pair["b_dev"]) == ids
    assert _pending(bob, tablet) == ids
    assert bob.ack_up_to(pair["b_dev"], ids[-1]) == 3
    assert _pending(bob, pair["b_dev"]) == []
    assert _pending(bob, tablet) == ids


def test_the_per_message_ack_still_acknowledges_only_the_ids_given(pair) -> None:  # type: ignore[no-untyped-def]
    ids = _send(pair, 3)
    bob, device = pair["bob"], pair["b_dev"]
    assert bob.ack(device, [ids[0], ids[2]]) == 2
    assert _pending(bob, device) == [ids[1]]


@pytest.mark.parametrize(
    "body", [{}, {"message_ids": [1], "up_to": 1}, {"up_to": 0}, {"message_ids": []}]
)
def test_an_ack_needs_exactly_one_of_message_ids_and_up_to(pair, body) -> None:  # type: ignore[no-untyped-def]
    answer = pair["bob"].http.post(f"/dm/devices/{pair['b_dev']}/ack", json=body)
    assert answer.status_code == 422


# ---- last_seen_at written at most once per interval for sends and acks -------------


@pytest.fixture
def hourly_pair(database_url, redis_url, workdir, admin_token) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    servers = own_server(database_url, redis_url, workdir, E2EE_LAST_SEEN_INTERVAL_SECONDS="3600")
    for server in servers:
        with pair_on(server, admin_token) as pair:
            yield pair


@pytest.fixture
def quick_pair(database_url, redis_url, workdir, admin_token) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    servers = own_server(database_url, redis_url, workdir, E2EE_LAST_SEEN_INTERVAL_SECONDS="0.2")
    for server in servers:
        with pair_on(server, admin_token) as pair:
            yield pair


def test_sends_and_acks_within_the_interval_leave_last_seen_at_alone(hourly_pair, clean_db) -> None:  # type: ignore[no-untyped-def]
    pair = hourly_pair
    first = _send(pair, 1)[0]  # the first send writes it
    sender_seen = last_seen(clean_db, pair["a_dev"])
    _send(pair, 2)
    assert last_seen(clean_db, pair["a_dev"]) == sender_seen
    pair["bob"].ack(pair["b_dev"], [first])  # the first ack writes it
    receiver_seen = last_seen(clean_db, pair["b_dev"])
    pair["bob"].poll(pair["b_dev"])  # polling always writes it
    polled = last_seen(clean_db, pair["b_dev"])
    assert polled > receiver_seen
    pair["bob"].ack_up_to(pair["b_dev"], 2**62)
    assert last_seen(clean_db, pair["b_dev"]) == polled


def test_a_device_is_recorded_seen_again_after_the_interval(quick_pair, clean_db) -> None:  # type: ignore[no-untyped-def]
    pair = quick_pair
    first = _send(pair, 1)[0]
    sender_seen = last_seen(clean_db, pair["a_dev"])
    pair["bob"].ack(pair["b_dev"], [first])
    receiver_seen = last_seen(clean_db, pair["b_dev"])
    time.sleep(0.3)  # past the interval
    second = _send(pair, 1)[0]
    pair["bob"].ack(pair["b_dev"], [second])
    assert last_seen(clean_db, pair["a_dev"]) > sender_seen
    assert last_seen(clean_db, pair["b_dev"]) > receiver_seen


# ---- open streams: access checked for all at once ------------------------------------


def test_a_blocked_users_stream_closes_and_the_other_streams_stay_open(
    reference_server, admin, users, pair
) -> None:  # type: ignore[no-untyped-def]
    alice_id = _alice_id(pair)
    alice_token = pair["alice"].http.headers["Authorization"].split()[1]
    _, carol = users.new("carol")
    carol_dev = carol.register_device("carol-phone")["device_id"]
    carol_conv = carol.open_conversation(alice_id)
    bobs = StreamCollector(reference_server.url, pair["bob_token"], pair["b_dev"]).start()
    alices = StreamCollector(reference_server.url, alice_token, pair["a_dev"]).start()
    try:
        admin.block(pair["bob_id"], "compromised")
        assert bobs.ended.wait(10), "the blocked user's stream stayed open"
        assert bobs.snapshot()[-1].data == {"reason": "access revoked"}
        message_id = carol.send(carol_conv, carol_dev, alice_id)["message_id"]
        assert alices.wait_for(lambda evs: message_id in _message_ids(evs), 10)
        assert not alices.ended.is_set()
    finally:
        bobs.close()
        alices.close()


def _message_ids(events: list[StreamEvent]) -> list[int]:
    return [int(e.data["message_id"]) for e in events if e.event == "message"]
