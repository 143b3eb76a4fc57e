"""Devices and keys: registration with real Ed25519 signatures, prekey pools, claims.

Includes the concurrency check: one-time prekeys are handed out exactly once when
many claimers race for the same device.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from datetime import datetime

import httpx
import psycopg
import pytest

from e2ee_ops.dburl import libpq_url
from e2ee_ops.reference.client import ApiFailure, DeviceIdentity, _b64


def _sql(url: str, query: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _fingerprint(b64_key: str) -> str:
    return hashlib.sha256(base64.b64decode(b64_key)).hexdigest()[:16]


def _device(client, device_id: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return next(d for d in client.devices() if d["device_id"] == device_id)


def test_register_device_with_valid_signature(users, database_url) -> None:  # type: ignore[no-untyped-def]
    uid, alice = users.new("alice")
    ident = DeviceIdentity()
    r = alice.http.post(
        "/e2ee/devices",
        json={
            "device_name": "alice-phone",
            "identity_key": ident.identity_public,
            "signed_prekey": ident.signed_prekey(),
            "one_time_prekeys": ident.one_time_prekeys(7),
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"device_id", "bundle_version", "prekeys_remaining"}
    assert body["bundle_version"] == 1 and body["prekeys_remaining"] == 7
    device_id = uuid.UUID(body["device_id"])
    rows = _sql(
        database_url,
        "SELECT d.user_id, d.status, d.identity_key, kb.prekeys_remaining,"
        " (SELECT count(*) FROM e2ee_one_time_prekeys o WHERE o.device_id = d.device_id) "
        "FROM e2ee_devices d JOIN e2ee_key_bundles kb USING (device_id) WHERE device_id = %s",
        (device_id,),
    )
    assert len(rows) == 1
    user_id, status, identity_key, remaining, stored = rows[0]
    assert (user_id, status, remaining, stored) == (uid, "active", 7, 7)
    assert _b64(bytes(identity_key)) == ident.identity_public
    # Others see the device and its identity key.
    _, bob = users.new("bob")
    assert bob.user_devices(uid) == [
        {"device_id": str(device_id), "bundle_version": 1, "identity_key": ident.identity_public}
    ]


def test_bad_signature_is_refused_and_nothing_stored(users, database_url) -> None:  # type: ignore[no-untyped-def]
    uid, alice = users.new("alice")
    ident, impostor = DeviceIdentity(), DeviceIdentity()
    r = alice.http.post(
        "/e2ee/devices",
        json={
            "device_name": "alice-phone",
            "identity_key": ident.identity_public,
            # Signed by another identity key than the one registered.
            "signed_prekey": impostor.signed_prekey(),
            "one_time_prekeys": ident.one_time_prekeys(5),
        },
    )
    assert r.status_code == 422
    assert r.json()["code"] == "BAD_SIGNATURE"
    assert _sql(database_url, "SELECT count(*) FROM e2ee_devices WHERE user_id = %s", (uid,)) == [
        (0,)
    ]
    assert _sql(database_url, "SELECT count(*) FROM e2ee_key_bundles") == [(0,)]
    assert _sql(database_url, "SELECT count(*) FROM e2ee_one_time_prekeys") == [(0,)]
    assert alice.devices() == []


def test_malformed_keys_are_refused(users) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    ident = DeviceIdentity()
    base = {
        "device_name": "x",
        "identity_key": ident.identity_public,
        "signed_prekey": ident.signed_prekey(),
        "one_time_prekeys": [],
    }
    short_identity = {**base, "identity_key": _b64(b"\x01" * 16)}
    not_base64 = {**base, "identity_key": "not base64!!"}
    tampered_sig = {
        **base,
        "signed_prekey": {**base["signed_prekey"], "signature": _b64(b"\0" * 64)},
    }
    for body in (short_identity, not_base64, tampered_sig):
        r = alice.http.post("/e2ee/devices", json=body)
        assert r.status_code == 422
        assert r.json()["code"] == "BAD_SIGNATURE"
    assert alice.devices() == []


def test_device_listing(users, database_url) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone", prekeys=12)["device_id"]
    [listed] = alice.devices()
    assert listed["device_id"] == device_id
    assert listed["device_name"] == "alice-phone"
    assert listed["status"] == "active"
    assert listed["prekeys_remaining"] == 12
    assert listed["bundle_version"] == 1
    assert 0 <= listed["signed_prekey_age_days"] < 0.01
    datetime.fromisoformat(listed["signed_prekey_uploaded_at"])
    first_seen = datetime.fromisoformat(listed["last_seen_at"])

    _sql(
        database_url,
        "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '30 days',"
        " prekeys_remaining = prekeys_remaining WHERE device_id = %s",
        (device_id,),
    )
    _sql(
        database_url,
        "UPDATE e2ee_devices SET last_seen_at = now() - interval '3 days' WHERE device_id = %s",
        (device_id,),
    )
    listed = _device(alice, device_id)
    assert 29.99 < listed["signed_prekey_age_days"] < 30.01
    assert datetime.fromisoformat(listed["last_seen_at"]) < first_seen

    # Uploading prekeys counts as the device being seen.
    alice.upload_prekeys(device_id, 1)
    assert datetime.fromisoformat(_device(alice, device_id)["last_seen_at"]) >= first_seen

    # Another user's devices are not listed.
    _, bob = users.new("bob")
    assert bob.devices() == []


def test_upload_prekeys_raises_the_count_without_double_counting(users, database_url) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone", prekeys=3)["device_id"]
    assert alice.upload_prekeys(device_id, 4) == 7
    ident = alice.identities[device_id]
    # Re-send key ids 5..7 (already stored) together with two new ones.
    resend = [{"key_id": k, "public_key": _b64(b"\x07" * 32)} for k in (5, 6, 7)]
    new = ident.one_time_prekeys(2)
    r = alice.http.post(
        f"/e2ee/devices/{device_id}/prekeys", json={"one_time_prekeys": resend + new}
    )
    assert r.status_code == 200
    assert r.json()["prekeys_remaining"] == 9
    assert _device(alice, device_id)["prekeys_remaining"] == 9
    rows = _sql(
        database_url,
        "SELECT count(*), count(DISTINCT key_id) FROM e2ee_one_time_prekeys WHERE device_id = %s",
        (device_id,),
    )
    assert rows == [(9, 9)]
    # The original public key of a re-sent id was kept, not replaced.
    assert _sql(
        database_url,
        "SELECT count(*) FROM e2ee_one_time_prekeys WHERE device_id = %s AND public_key = %s",
        (device_id, b"\x07" * 32),
    ) == [(0,)]


def test_only_the_owner_uploads_prekeys(users) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    _, bob = users.new("bob")
    device_id = alice.register_device("alice-phone", prekeys=1)["device_id"]
    r = bob.http.post(
        f"/e2ee/devices/{device_id}/prekeys",
        json={"one_time_prekeys": [{"key_id": 99, "public_key": _b64(b"\x01" * 32)}]},
    )
    assert r.status_code == 404
    assert _device(alice, device_id)["prekeys_remaining"] == 1


def test_claim_hands_out_a_complete_bundle(users, database_url) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    device_id = alice.register_device("alice-phone", prekeys=2)["device_id"]
    ident = alice.identities[device_id]
    bundle = bob.claim(device_id)
    assert bundle["device_id"] == device_id and bundle["user_id"] == alice_id
    assert bundle["identity_key"] == ident.identity_public
    assert bundle["bundle_version"] == 1
    assert bundle["signed_prekey"]["key_id"] == 1
    # The signed prekey verifies against the identity key, as a real client checks.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    Ed25519PublicKey.from_public_bytes(base64.b64decode(bundle["identity_key"])).verify(
        base64.b64decode(bundle["signed_prekey"]["signature"]),
        base64.b64decode(bundle["signed_prekey"]["public_key"]),
    )
    assert bundle["one_time_prekey"]["key_id"] == 1
    assert bob.claim(device_id)["one_time_prekey"]["key_id"] == 2
    assert _device(alice, device_id)["prekeys_remaining"] == 0
    assert _sql(
        database_url,
        "SELECT claimed_by_user_id, key_id FROM e2ee_prekey_claims WHERE device_id = %s"
        " ORDER BY id",
        (device_id,),
    ) == [(bob_id, 1), (bob_id, 2)]


def test_exhausted_device_answers_409(users) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    _, bob = users.new("bob")
    device_id = alice.register_device("alice-phone", prekeys=1)["device_id"]
    bob.claim(device_id)
    r = bob.http.post(f"/e2ee/devices/{device_id}/claim")
    assert r.status_code == 409
    assert r.json()["code"] == "PREKEYS_EXHAUSTED"
    # Refilling ends it.
    alice.upload_prekeys(device_id, 1)
    assert bob.claim(device_id)["one_time_prekey"]["key_id"] == 2


def test_claim_on_unknown_device_is_404(users) -> None:  # type: ignore[no-untyped-def]
    _, bob = users.new("bob")
    r = bob.http.post(f"/e2ee/devices/{uuid.uuid4()}/claim")
    assert r.status_code == 404


def test_rotating_the_signed_prekey_makes_old_envelopes_stale(users, database_url) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    a_dev = alice.register_device("alice-phone")["device_id"]
    b_dev = bob.register_device("bob-phone")["device_id"]
    [seen] = alice.user_devices(bob_id)
    assert seen["bundle_version"] == 1
    assert bob.rotate_signed_prekey(b_dev) == 2
    assert _device(bob, b_dev)["bundle_version"] == 2
    assert alice.claim(b_dev)["bundle_version"] == 2
    conv = alice.open_conversation(bob_id)
    r = alice.http.post(
        f"/dm/conversations/{conv}/messages",
        json={
            "sender_device_id": a_dev,
            "client_message_id": "m1",
            "envelopes": [{"device_id": b_dev, "bundle_version": 1, "ciphertext": _b64(b"x" * 8)}],
        },
    )
    assert r.status_code == 409
    assert r.json()["code"] == "BUNDLE_STALE"
    assert _sql(database_url, "SELECT count(*) FROM dm_messages") == [(0,)]
    assert _sql(database_url, "SELECT count(*) FROM dm_envelopes") == [(0,)]
    # Encrypting to the current version works (and the same client_message_id is free).
    r = alice.http.post(
        f"/dm/conversations/{conv}/messages",
        json={
            "sender_device_id": a_dev,
            "client_message_id": "m1",
            "envelopes": [{"device_id": b_dev, "bundle_version": 2, "ciphertext": _b64(b"x" * 8)}],
        },
    )
    assert r.status_code == 201 and r.json()["duplicate"] is False


def test_rotation_with_a_bad_signature_is_refused(users) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone")["device_id"]
    r = alice.http.put(
        f"/e2ee/devices/{device_id}/signed-prekey", json=DeviceIdentity().signed_prekey(key_id=9)
    )
    assert r.status_code == 422 and r.json()["code"] == "BAD_SIGNATURE"
    assert _device(alice, device_id)["bundle_version"] == 1


def test_old_signed_prekey_makes_the_bundle_stale(users, database_url) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    _, bob = users.new("bob")
    device_id = alice.register_device("alice-phone", prekeys=3)["device_id"]
    _sql(
        database_url,
        "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '89 days'"
        " WHERE device_id = %s",
        (device_id,),
    )
    assert bob.claim(device_id)["one_time_prekey"]["key_id"] == 1  # 89 days: still fine
    _sql(
        database_url,
        "UPDATE e2ee_key_bundles SET signed_prekey_uploaded_at = now() - interval '91 days'"
        " WHERE device_id = %s",
        (device_id,),
    )
    r = bob.http.post(f"/e2ee/devices/{device_id}/claim")
    assert r.status_code == 409
    assert r.json()["code"] == "BUNDLE_STALE"
    # A refused claim consumes nothing.
    assert _device(alice, device_id)["prekeys_remaining"] == 2
    assert _sql(
        database_url,
        "SELECT count(*) FROM e2ee_one_time_prekeys WHERE device_id = %s",
        (device_id,),
    ) == [(2,)]
    assert 90.9 < _device(alice, device_id)["signed_prekey_age_days"] < 91.1
    # Rotating the signed prekey makes the device claimable again.
    alice.rotate_signed_prekey(device_id)
    assert bob.claim(device_id)["one_time_prekey"]["key_id"] == 2


def test_revoked_device_refuses_claims(users, database_url) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    _, bob = users.new("bob")
    keep = alice.register_device("alice-laptop", prekeys=2)["device_id"]
    device_id = alice.register_device("alice-phone", prekeys=5)["device_id"]
    assert alice.revoke_device(device_id) == {"device_id": device_id, "status": "revoked"}
    r = bob.http.post(f"/e2ee/devices/{device_id}/claim")
    assert r.status_code == 409
    assert r.json()["code"] == "DEVICE_REVOKED"
    listed = _device(alice, device_id)
    assert listed["status"] == "revoked" and listed["prekeys_remaining"] == 0
    assert _sql(
        database_url,
        "SELECT count(*) FROM e2ee_one_time_prekeys WHERE device_id = %s",
        (device_id,),
    ) == [(0,)]
    # It is no longer offered to senders; the other device is.
    assert [d["device_id"] for d in bob.user_devices(alice_id)] == [keep]
    # Its owner can no longer refill it.
    with pytest.raises(ApiFailure) as failure:
        alice.upload_prekeys(device_id, 3)
    assert failure.value.status_code == 409 and failure.value.code == "DEVICE_REVOKED"


def test_concurrent_claims_hand_out_each_prekey_exactly_once(
    users, reference_server, database_url
) -> None:  # type: ignore[no-untyped-def]
    _, owner = users.new("owner")
    device_id = owner.register_device("owner-phone", prekeys=20)["device_id"]
    tokens = []
    for i in range(5):
        _, c = users.new(f"claimer{i}")
        tokens.append(c.http.headers["Authorization"])

    async def claim_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(
            base_url=reference_server.url, timeout=30, limits=limits
        ) as http:
            start = asyncio.Event()

            async def one(i: int) -> httpx.Response:
                await start.wait()
                return await http.post(
                    f"/e2ee/devices/{device_id}/claim",
                    headers={"Authorization": tokens[i % len(tokens)]},
                )

            tasks = [asyncio.ensure_future(one(i)) for i in range(50)]
            await asyncio.sleep(0)
            start.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(claim_all())
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 409]
    assert len(ok) == 20, [r.status_code for r in responses]
    assert len(refused) == 30
    assert {r.json()["code"] for r in refused} == {"PREKEYS_EXHAUSTED"}
    key_ids = [r.json()["one_time_prekey"]["key_id"] for r in ok]
    assert sorted(key_ids) == list(range(1, 21))
    public_keys = {r.json()["one_time_prekey"]["public_key"] for r in ok}
    assert len(public_keys) == 20

    assert _sql(
        database_url,
        "SELECT prekeys_remaining FROM e2ee_key_bundles WHERE device_id = %s",
        (device_id,),
    ) == [(0,)]
    assert _sql(
        database_url,
        "SELECT count(*) FROM e2ee_one_time_prekeys WHERE device_id = %s",
        (device_id,),
    ) == [(0,)]
    assert _sql(
        database_url,
        "SELECT count(*), count(DISTINCT key_id) FROM e2ee_prekey_claims WHERE device_id = %s",
        (device_id,),
    ) == [(20, 20)]
    assert _device(owner, device_id)["prekeys_remaining"] == 0


def test_identity_key_change_is_recorded(users, database_url) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    _, bob = users.new("bob")
    device_id = alice.register_device("alice-phone", prekeys=4)["device_id"]
    old_key = alice.identities[device_id].identity_public
    changed = alice.change_identity(device_id)
    new_key = alice.identities[device_id].identity_public
    assert changed == {"device_id": device_id, "changed": True, "bundle_version": 2}
    rows = _sql(
        database_url,
        "SELECT user_id, device_id, old_fingerprint, new_fingerprint FROM e2ee_identity_events",
    )
    assert rows == [(alice_id, uuid.UUID(device_id), _fingerprint(old_key), _fingerprint(new_key))]
    listed = _device(alice, device_id)
    assert listed["bundle_version"] == 2
    # The old one-time prekeys belonged to the old identity: they are gone.
    assert listed["prekeys_remaining"] == 0
    assert bob.user_devices(alice_id)[0]["identity_key"] == new_key
    r = bob.http.post(f"/e2ee/devices/{device_id}/claim")
    assert r.status_code == 409 and r.json()["code"] == "PREKEYS_EXHAUSTED"
    alice.upload_prekeys(device_id, 1)
    assert bob.claim(device_id)["identity_key"] == new_key
    # A second change is a second event and another version.
    assert alice.change_identity(device_id)["bundle_version"] == 3
    assert _sql(database_url, "SELECT count(*) FROM e2ee_identity_events") == [(2,)]


def test_identity_change_with_a_bad_signature_changes_nothing(users, database_url) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone", prekeys=4)["device_id"]
    new, other = DeviceIdentity(), DeviceIdentity()
    r = alice.http.put(
        f"/e2ee/devices/{device_id}/identity",
        json={"identity_key": new.identity_public, "signed_prekey": other.signed_prekey()},
    )
    assert r.status_code == 422 and r.json()["code"] == "BAD_SIGNATURE"
    listed = _device(alice, device_id)
    assert listed["bundle_version"] == 1 and listed["prekeys_remaining"] == 4
    assert _sql(database_url, "SELECT count(*) FROM e2ee_identity_events") == [(0,)]


def test_re_sending_the_same_identity_key_is_not_a_change(users, database_url) -> None:  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    device_id = alice.register_device("alice-phone", prekeys=4)["device_id"]
    ident = alice.identities[device_id]
    r = alice.http.put(
        f"/e2ee/devices/{device_id}/identity",
        json={"identity_key": ident.identity_public, "signed_prekey": ident.signed_prekey()},
    )
    assert r.status_code == 200
    assert r.json()["changed"] is False
    assert _sql(database_url, "SELECT count(*) FROM e2ee_identity_events") == [(0,)]
    listed = _device(alice, device_id)
    assert listed["bundle_version"] == 1 and listed["prekeys_remaining"] == 4
