"""A small, real device client of the reference server.

It makes genuine Ed25519 identity keys and signed prekeys, so the server's checks
run for real. Tests, the sandbox's seeding and the demo's traffic use it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _x25519_public() -> bytes:
    return X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class DeviceIdentity:
    """The private half a real device keeps; only public keys leave it."""

    identity: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    next_key_id: int = 1

    @property
    def identity_public(self) -> str:
        return _b64(self.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def signed_prekey(self, key_id: int = 1) -> dict[str, Any]:
        public = _x25519_public()
        return {
            "key_id": key_id,
            "public_key": _b64(public),
            "signature": _b64(self.identity.sign(public)),
        }

    def one_time_prekeys(self, count: int) -> list[dict[str, Any]]:
        keys = [
            {"key_id": self.next_key_id + i, "public_key": _b64(_x25519_public())}
            for i in range(count)
        ]
        self.next_key_id += count
        return keys


class ApiFailure(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = {"detail": response.text[:200]}
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> "
            f"{self.status_code} {self.body}"
        )

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


@dataclass
class StreamEvent:
    event: str
    id: str | None
    data: dict[str, Any]


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle, which costs
    more than a request (clients are made by the hundred in tests and benches)."""
    return httpx.create_ssl_context()


class ReferenceClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=_tls(),
        )
        self.identities: dict[str, DeviceIdentity] = {}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ReferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiFailure(response)
        return response.json()

    # ---- admin ----------------------------------------------------------------------

    def create_user(self, username: str, email: str | None = None) -> int:
        body = self.request("POST", "/admin/users", json={"username": username, "email": email})
        return int(body["account_id"])

    def issue_token(self, account_id: int, scope: str = "user") -> str:
        body = self.request("POST", f"/admin/users/{account_id}/tokens", json={"scope": scope})
        return str(body["token"])

    def revoke_token(self, token_id: int) -> Any:
        return self.request("DELETE", f"/admin/tokens/{token_id}")

    def block(self, account_id: int, reason: str) -> Any:
        return self.request("POST", f"/admin/users/{account_id}/block", json={"reason": reason})

    def unblock(self, account_id: int) -> Any:
        return self.request("DELETE", f"/admin/users/{account_id}/block")

    # ---- devices --------------------------------------------------------------------

    def register_device(self, name: str, prekeys: int = 20) -> dict[str, Any]:
        ident = DeviceIdentity()
        body = self.request(
            "POST",
            "/e2ee/devices",
            json={
                "device_name": name,
                "identity_key": ident.identity_public,
                "signed_prekey": ident.signed_prekey(),
                "one_time_prekeys": ident.one_time_prekeys(prekeys),
            },
        )
        self.identities[body["device_id"]] = ident
        return dict(body)

    def devices(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/e2ee/devices")["devices"])

    def upload_prekeys(self, device_id: str, count: int) -> int:
        keys = self.identities[device_id].one_time_prekeys(count)
        body = self.request(
            "POST", f"/e2ee/devices/{device_id}/prekeys", json={"one_time_prekeys": keys}
        )
        return int(body["prekeys_remaining"])

    def rotate_signed_prekey(self, device_id: str) -> int:
        ident = self.identities[device_id]
        body = self.request(
            "PUT",
            f"/e2ee/devices/{device_id}/signed-prekey",
            json=ident.signed_prekey(key_id=ident.next_key_id),
        )
        return int(body["bundle_version"])

    def change_identity(self, device_id: str) -> dict[str, Any]:
        ident = DeviceIdentity()
        self.identities[device_id] = ident
        return dict(
            self.request(
                "PUT",
                f"/e2ee/devices/{device_id}/identity",
                json={
                    "identity_key": ident.identity_public,
                    "signed_prekey": ident.signed_prekey(),
                },
            )
        )

    def revoke_device(self, device_id: str) -> Any:
        return self.request("DELETE", f"/e2ee/devices/{device_id}")

    def user_devices(self, account_id: int) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/e2ee/users/{account_id}/devices")["devices"])

    def claim(self, device_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/e2ee/devices/{device_id}/claim"))

    # ---- messaging ------------------------------------------------------------------

    def open_conversation(self, peer_user_id: int) -> int:
        body = self.request("POST", "/dm/conversations", json={"peer_user_id": peer_user_id})
        return int(body["conversation_id"])

    def conversations(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/dm/conversations")["conversations"])

    def send(
        self,
        conversation_id: int,
        sender_device_id: str,
        peer_user_id: int,
        *,
        ciphertext: bytes | None = None,
        client_message_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one opaque envelope to each active device of the peer."""
        envelopes = [
            {
                "device_id": d["device_id"],
                "bundle_version": d["bundle_version"],
                "ciphertext": _b64(ciphertext if ciphertext is not None else os.urandom(48)),
            }
            for d in self.user_devices(peer_user_id)
        ]
        return dict(
            self.request(
                "POST",
                f"/dm/conversations/{conversation_id}/messages",
                json={
                    "sender_device_id": sender_device_id,
                    "client_message_id": client_message_id or uuid.uuid4().hex,
                    "envelopes": envelopes,
                },
            )
        )

    def poll(self, device_id: str, after: int = 0) -> dict[str, Any]:
        return dict(
            self.request("GET", f"/dm/devices/{device_id}/messages", params={"after": after})
        )

    def ack(self, device_id: str, message_ids: list[int]) -> int:
        body = self.request(
            "POST", f"/dm/devices/{device_id}/ack", json={"message_ids": message_ids}
        )
        return int(body["acknowledged"])

    def ack_up_to(self, device_id: str, up_to: int) -> int:
        """Acknowledge every message up to `up_to` the server has sent to the device."""
        body = self.request("POST", f"/dm/devices/{device_id}/ack", json={"up_to": up_to})
        return int(body["acknowledged"])

    def stream(
        self, device_id: str, *, last_event_id: str | None = None, read_timeout: float = 30.0
    ) -> Iterator[StreamEvent]:
        """Events of the device's SSE stream until the server closes it."""
        from httpx_sse import connect_sse

        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        timeout = httpx.Timeout(10.0, read=read_timeout)
        with connect_sse(
            self.http, "GET", f"/dm/devices/{device_id}/stream", headers=headers, timeout=timeout
        ) as source:
            if source.response.status_code >= 400:
                source.response.read()
                raise ApiFailure(source.response)
            for sse in source.iter_sse():
                data = json.loads(sse.data) if sse.data else {}
                yield StreamEvent(sse.event, sse.id or None, data)


class OnlineDevice:
    """A device that stays online: it follows its SSE stream in a thread, acknowledges
    every message, and reconnects with Last-Event-ID when the server goes away, as a
    real client does. It records the message ids it received, in order."""

    def __init__(self, base_url: str, token: str, device_id: str) -> None:
        import threading

        self.base_url, self.token, self.device_id = base_url, token, device_id
        self.received: list[int] = []
        self.deliveries: list[int] = []  # every message event, duplicates included
        self.heartbeats: list[dict[str, Any]] = []
        self.reconnects = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"device-{device_id}")

    def start(self) -> OnlineDevice:
        self._thread.start()
        return self

    def _run(self) -> None:
        last_id: str | None = None
        while not self._stop.is_set():
            try:
                with ReferenceClient(self.base_url, self.token) as client:
                    events = client.stream(self.device_id, last_event_id=last_id, read_timeout=5)
                    for event in events:
                        if self._stop.is_set():
                            return
                        if event.event == "heartbeat":
                            with self._lock:
                                self.heartbeats.append(event.data)
                        elif event.event == "message":
                            message_id = int(event.data["message_id"])
                            last_id = str(message_id)
                            with self._lock:
                                self.deliveries.append(message_id)
                                if message_id not in self.received:
                                    self.received.append(message_id)
                            client.ack(self.device_id, [message_id])
            except (httpx.HTTPError, ApiFailure):
                pass  # the server restarted or refused: retry like a client would
            self.reconnects += 1
            self._stop.wait(0.5)

    def messages(self) -> list[int]:
        with self._lock:
            return list(self.received)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
