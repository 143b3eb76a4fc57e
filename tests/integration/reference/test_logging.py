"""What the server logs: security events yes; ciphertext, plaintext and tokens never.

A canary plaintext is sent as the "ciphertext" of real messages, then pushed over SSE,
polled, and echoed into every error path we can reach; afterwards neither it nor the
user's token may appear in the server's log, in raw, base64 or hex form.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2ee_ops.embedded import ReferenceServerProcess
from e2ee_ops.reference.client import ApiFailure, ReferenceClient, StreamEvent, _b64

FAST = {
    "E2EE_HEARTBEAT_SECONDS": "0.3",
    "E2EE_METRICS_CACHE_SECONDS": "0",
    "E2EE_RATE_LIMIT_MESSAGES": "5",
    "E2EE_REDIS_RETRY_SECONDS": "0.2",
}


class VerboseServer(ReferenceServerProcess):
    """The reference server at debug level with uvicorn's access log on."""

    def start(self, timeout: float = 30.0, **overrides: str) -> None:
        self.env.update(overrides)
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "E2EE_DATABASE_URL": self.database_url,
            "E2EE_REDIS_URL": self.redis_url,
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "e2ee_ops.reference",
                    "serve",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "debug",
                    "--access-log",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)


@pytest.fixture(scope="module")
def verbose_server(database_url, redis_url, workdir) -> Iterator[ReferenceServerProcess]:  # type: ignore[no-untyped-def]
    server = VerboseServer(database_url, redis_url, workdir / "verbose", env=dict(FAST))
    server.start()
    yield server
    server.stop()


def _forms(secret: bytes) -> list[str]:
    """The spellings in which a secret could leak into a text log."""
    forms = {
        secret.decode("utf-8", "replace"),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        secret.hex(),
        repr(secret),
    }
    return sorted(forms)


def _token(client: ReferenceClient) -> str:
    return client.http.headers["Authorization"].removeprefix("Bearer ")


def _read_stream(client: ReferenceClient, device_id: str, want: int) -> list[StreamEvent]:
    """Read the device's stream until `want` messages arrived (in a thread, with a bound)."""
    events: list[StreamEvent] = []
    done = threading.Event()

    def run() -> None:
        try:
            for event in client.stream(device_id, read_timeout=10):
                events.append(event)
                if sum(e.event == "message" for e in events) >= want:
                    return
        except Exception:  # noqa: BLE001 - the assertion below reports it
            pass
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    done.wait(15)
    return events


def _exercise(
    base_url: str,
    alice: ReferenceClient,
    bob: ReferenceClient,
    ids: dict,  # type: ignore[type-arg]
    canary: bytes,
    *,
    expect_429: bool,
) -> None:
    """Sends, a stream, polls, acks, claims and errors, all carrying the canary."""
    a_dev, b_dev, conv, bob_id = ids["a_dev"], ids["b_dev"], ids["conv"], ids["bob_id"]
    with ReferenceClient(base_url, _token(alice)) as a, ReferenceClient(base_url, _token(bob)) as b:
        sent = [a.send(conv, a_dev, bob_id, ciphertext=canary)["message_id"] for _ in range(2)]
        events = _read_stream(b, b_dev, 2)
        pushed = [e for e in events if e.event == "message"]
        assert [int(e.id or 0) for e in pushed] == sent
        # The stream did carry the canary: it is the log that must not.
        assert all(base64.b64decode(e.data["ciphertext"]) == canary for e in pushed)
        polled = b.poll(b_dev)["messages"]
        assert [m["message_id"] for m in polled] == sent
        b.ack(b_dev, sent)

        # Claims: one handed out, then exhausted (409).
        a.claim(ids["spare"])
        r = a.http.post(f"/e2ee/devices/{ids['spare']}/claim")
        assert r.status_code == 409

        canary_b64 = _b64(canary)
        path = f"/dm/conversations/{conv}/messages"

        def envelope(device: str, version: int = 1, ciphertext: str = canary_b64) -> dict:  # type: ignore[type-arg]
            return {"device_id": device, "bundle_version": version, "ciphertext": ciphertext}

        bad_sends = [
            # stale bundle version: 409 BUNDLE_STALE
            {
                "sender_device_id": a_dev,
                "client_message_id": "x1",
                "envelopes": [envelope(b_dev, 7)],
            },
            # a device that is not the recipient's: 404
            {
                "sender_device_id": a_dev,
                "client_message_id": "x2",
                "envelopes": [envelope(str(uuid.uuid4()))],
            },
            # the canary as non-base64 "ciphertext": 422
            {
                "sender_device_id": a_dev,
                "client_message_id": "x3",
                "envelopes": [envelope(b_dev, 1, canary.decode() + "!!")],
            },
            # a malformed body holding the canary: 422 from validation
            {"sender_device_id": a_dev, "client_message_id": "x4", "envelopes": canary_b64},
            {
                "sender_device_id": canary.decode(),
                "client_message_id": "x5",
                "envelopes": [envelope(b_dev)],
            },
        ]
        for body in bad_sends:
            r = a.http.post(path, json=body)
            assert 400 <= r.status_code < 500, r.status_code
            assert canary_b64 not in r.text and canary.decode() not in r.text
        # Over the rate limit (5 per window on these servers): 429.
        codes = []
        for _ in range(6):
            try:
                a.send(conv, a_dev, bob_id, ciphertext=canary)
                codes.append(201)
            except ApiFailure as failure:
                codes.append(failure.status_code)
        if expect_429:
            assert 429 in codes
        # Broken and foreign tokens: 401 and 403.
        token = _token(alice)
        for header in (f"Bearer {token}x", f"Bearer x{token}", f"Basic {token}", token):
            r = httpx.get(base_url + "/e2ee/devices", headers={"Authorization": header})
            assert r.status_code == 401
        r = httpx.get(base_url + "/dm/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
        # End with a logged event, so the test knows the log is written up to here.
        a.change_identity(a_dev)


@pytest.fixture
def scenario(users):  # type: ignore[no-untyped-def]
    _, alice = users.new("alice")
    bob_id, bob = users.new("bob")
    ids = {
        "a_dev": alice.register_device("alice-phone")["device_id"],
        "b_dev": bob.register_device("bob-phone")["device_id"],
        "spare": bob.register_device("bob-spare", prekeys=1)["device_id"],
        "bob_id": bob_id,
        "conv": alice.open_conversation(bob_id),
    }
    return alice, bob, ids


def _assert_clean(log: str, canary: bytes, tokens: list[str]) -> None:
    for form in _forms(canary):
        assert form not in log, f"the canary leaked into the log as {form!r}"
    for token in tokens:
        for form in [*_forms(token.encode()), hashlib.sha256(token.encode()).hexdigest()]:
            assert form not in log, "a token leaked into the log"
    # Nor a fragment long enough to matter (a tokenizer or a truncating formatter).
    for token in tokens:
        assert token[5:25] not in log


def _wait_for_log(path: Path, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8", errors="replace")
        if needle in text:
            return text
        time.sleep(0.05)
    return text


@pytest.mark.parametrize("which", ["default", "verbose"])
def test_no_ciphertext_plaintext_or_token_in_the_log(
    which, reference_server, verbose_server, scenario
) -> None:  # type: ignore[no-untyped-def]
    server = reference_server if which == "default" else verbose_server
    alice, bob, ids = scenario
    canary = f"CANARY-PLAINTEXT-{uuid.uuid4().hex}".encode()
    _exercise(server.url, alice, bob, ids, canary, expect_429=which == "verbose")
    log = _wait_for_log(server.log_path, f"device={ids['a_dev']}")
    assert f"device={ids['a_dev']}" in log
    if which == "verbose":
        # The access log is on: the requests are there, their secrets are not.
        assert '/claim HTTP/1.1" 409' in log
        assert " 429" in log
    _assert_clean(log, canary, [_token(alice), _token(bob)])


def test_identity_key_change_is_a_security_event(reference_server, users) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    device_id = alice.register_device("alice-phone")["device_id"]
    old_key = alice.identities[device_id].identity_public
    alice.change_identity(device_id)
    new_key = alice.identities[device_id].identity_public
    log = _wait_for_log(reference_server.log_path, f"device={device_id}")
    [line] = [ln for ln in log.splitlines() if f"device={device_id}" in ln]
    assert "identity key changed" in line
    assert "WARNING" in line and "security" in line
    assert f"user={alice_id}" in line
    old_fp = hashlib.sha256(base64.b64decode(old_key)).hexdigest()[:16]
    new_fp = hashlib.sha256(base64.b64decode(new_key)).hexdigest()[:16]
    assert f"old={old_fp}" in line and f"new={new_fp}" in line
    # Fingerprints only: never the key itself.
    for key in (old_key, new_key):
        for form in _forms(base64.b64decode(key)):
            assert form not in log


def test_device_revocation_is_logged(reference_server, users) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = users.new("alice")
    device_id = alice.register_device("alice-phone")["device_id"]
    alice.revoke_device(device_id)
    log = _wait_for_log(reference_server.log_path, f"device revoked user={alice_id}")
    assert f"device revoked user={alice_id} device={device_id}" in log


def test_refusals_are_logged_with_context(reference_server, scenario) -> None:  # type: ignore[no-untyped-def]
    alice, _, ids = scenario
    r = alice.http.post(f"/e2ee/devices/{ids['spare']}/claim")
    assert r.status_code == 200
    r = alice.http.post(f"/e2ee/devices/{ids['spare']}/claim")
    assert r.status_code == 409
    log = _wait_for_log(reference_server.log_path, "PREKEYS_EXHAUSTED", timeout=1.0)
    lines = [ln for ln in log.splitlines() if ids["spare"] in ln]
    assert any("409" in ln and "PREKEYS_EXHAUSTED" in ln for ln in lines), lines
