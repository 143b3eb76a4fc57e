"""Key material checks: Ed25519 signatures over signed prekeys, key fingerprints."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class KeyError_(ValueError):
    """A key or signature that is malformed or does not verify."""


def decode_b64(value: str, what: str, *, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_(f"{what} is not valid base64") from None
    if size is not None and len(raw) != size:
        raise KeyError_(f"{what} must be {size} bytes, got {len(raw)}")
    if not raw:
        raise KeyError_(f"{what} is empty")
    return raw


def verify_signed_prekey(identity_key: bytes, prekey_public: bytes, signature: bytes) -> None:
    """Raise KeyError_ unless `signature` is the identity key's signature of the prekey."""
    try:
        Ed25519PublicKey.from_public_bytes(identity_key).verify(signature, prekey_public)
    except (InvalidSignature, ValueError):
        raise KeyError_(
            "signed prekey signature does not verify against the identity key"
        ) from None


def fingerprint(key: bytes) -> str:
    """A short, loggable stand-in for a public key (never the key itself)."""
    return hashlib.sha256(key).hexdigest()[:16]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
