from __future__ import annotations

import httpx


def test_health_and_a_message_round_trip(reference_server, users) -> None:
    health = httpx.get(reference_server.url + "/health").json()
    assert health["status"] == "ok" and health["redis"] == "ok"
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    a_dev = alice.register_device("alice-phone")["device_id"]
    b_dev = bob.register_device("bob-phone")["device_id"]
    conv = alice.open_conversation(bob_id)
    sent = alice.send(conv, a_dev, bob_id)
    assert sent["relayed"] is True
    events = bob.stream(b_dev, read_timeout=5)
    got = None
    for ev in events:
        if ev.event == "message":
            got = ev
            break
    assert got is not None and int(got.id) == sent["message_id"]
