"""Fixtures shared by the reference server's integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pair(users):  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    a_dev = alice.register_device("alice-phone")["device_id"]
    b_dev = bob.register_device("bob-phone")["device_id"]
    conv = alice.open_conversation(bob_id)
    return {
        "alice": alice,
        "bob": bob,
        "bob_id": bob_id,
        "a_dev": a_dev,
        "b_dev": b_dev,
        "conv": conv,
        "bob_token": bob.http.headers["Authorization"].split()[1],
    }
