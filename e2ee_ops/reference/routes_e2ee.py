"""Devices and keys: registration, listing, prekey upload, rotation, revocation, claims."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request

from e2ee_ops.reference.auth import Caller, caller
from e2ee_ops.reference.crypto import b64, decode_b64, fingerprint, verify_signed_prekey
from e2ee_ops.reference.errors import ApiError
from e2ee_ops.reference.schemas import (
    IdentityChange,
    IdPath,
    NewDevice,
    OneTimePrekeyIn,
    PrekeyUpload,
    SignedPrekeyIn,
)
from e2ee_ops.reference.state import (
    app_state,
    enforce_limit,
    refuse_blocked_user,
    require_dm_enabled,
)
from e2ee_ops.reference.store import Conflict, OneTimePrekey, SignedPrekey, as_datetime_str

router = APIRouter(prefix="/e2ee", dependencies=[Depends(require_dm_enabled)])
security_log = logging.getLogger("e2ee_ops.reference.security")

IDENTITY_KEY_BYTES = 32


def _signed_prekey(identity_key: bytes, spk: SignedPrekeyIn) -> SignedPrekey:
    public = decode_b64(spk.public_key, "signed_prekey.public_key")
    signature = decode_b64(spk.signature, "signed_prekey.signature", size=64)
    verify_signed_prekey(identity_key, public, signature)
    return SignedPrekey(spk.key_id, public, signature)


def _one_time(keys: list[OneTimePrekeyIn]) -> list[OneTimePrekey]:
    return [
        OneTimePrekey(k.key_id, decode_b64(k.public_key, f"one_time_prekeys[{i}].public_key"))
        for i, k in enumerate(keys)
    ]


@router.post("/devices", status_code=201)
async def register_device(
    body: NewDevice, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    identity = decode_b64(body.identity_key, "identity_key", size=IDENTITY_KEY_BYTES)
    spk = _signed_prekey(identity, body.signed_prekey)
    return await app_state(request).store.register_device(
        who.user_id, body.device_name, identity, spk, _one_time(body.one_time_prekeys)
    )


@router.get("/devices")
async def list_devices(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    rows = await app_state(request).store.list_devices(who.user_id)
    return {
        "devices": [
            {
                "device_id": str(r["device_id"]),
                "device_name": r["device_name"],
                "status": r["status"],
                "prekeys_remaining": r["prekeys_remaining"],
                "bundle_version": r["bundle_version"],
                "signed_prekey_uploaded_at": as_datetime_str(r["signed_prekey_uploaded_at"]),
                "signed_prekey_age_days": round(float(r["signed_prekey_age_days"]), 3),
                "last_seen_at": as_datetime_str(r["last_seen_at"]),
            }
            for r in rows
        ]
    }


async def _active_own_device(request: Request, device_id: uuid.UUID, who: Caller) -> Any:
    device = await app_state(request).store.owned_device(device_id, who.user_id)
    if device["status"] != "active":
        raise Conflict("DEVICE_REVOKED", "the device has been revoked")
    return device


@router.post("/devices/{device_id}/prekeys")
async def upload_prekeys(
    device_id: uuid.UUID, body: PrekeyUpload, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await _active_own_device(request, device_id, who)
    remaining = await app_state(request).store.add_prekeys(
        device_id, _one_time(body.one_time_prekeys)
    )
    return {"device_id": str(device_id), "prekeys_remaining": remaining}


@router.put("/devices/{device_id}/signed-prekey")
async def rotate_signed_prekey(
    device_id: uuid.UUID, body: SignedPrekeyIn, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    device = await _active_own_device(request, device_id, who)
    spk = _signed_prekey(bytes(device["identity_key"]), body)
    version = await app_state(request).store.rotate_signed_prekey(device_id, spk)
    return {"device_id": str(device_id), "bundle_version": version}


@router.put("/devices/{device_id}/identity")
async def change_identity(
    device_id: uuid.UUID, body: IdentityChange, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    device = await _active_own_device(request, device_id, who)
    identity = decode_b64(body.identity_key, "identity_key", size=IDENTITY_KEY_BYTES)
    spk = _signed_prekey(identity, body.signed_prekey)
    old_fp, new_fp = fingerprint(bytes(device["identity_key"])), fingerprint(identity)
    if old_fp == new_fp:
        # Same identity: nothing to record; use signed-prekey rotation to change the prekey.
        version = await app_state(request).store.bundle_version(device_id)
        return {"device_id": str(device_id), "changed": False, "bundle_version": version}
    version = await app_state(request).store.change_identity(
        device_id, who.user_id, old_fp, new_fp, identity, spk
    )
    security_log.warning(
        "security event: identity key changed user=%s device=%s old=%s new=%s",
        who.user_id,
        device_id,
        old_fp,
        new_fp,
    )
    return {"device_id": str(device_id), "changed": True, "bundle_version": version}


@router.delete("/devices/{device_id}")
async def revoke_device(
    device_id: uuid.UUID, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await app_state(request).store.owned_device(device_id, who.user_id)
    await app_state(request).store.revoke_device(device_id)
    security_log.warning("device revoked user=%s device=%s", who.user_id, device_id)
    return {"device_id": str(device_id), "status": "revoked"}


@router.get("/users/{account_id}/devices")
async def user_devices(
    account_id: IdPath, request: Request, _: Caller = Depends(caller)
) -> dict[str, Any]:
    store = app_state(request).store
    await store.get_user(account_id)
    rows = await store.active_devices_of(account_id)
    return {
        "devices": [
            {
                "device_id": str(r["device_id"]),
                "bundle_version": r["bundle_version"],
                "identity_key": b64(bytes(r["identity_key"])),
            }
            for r in rows
        ]
    }


@router.post("/devices/{device_id}/claim")
async def claim_bundle(
    device_id: uuid.UUID, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    state = app_state(request)
    refuse_blocked_user(who)
    owner = await state.store.device_owner(device_id)
    if await state.store.blocked_between(who.user_id, [owner]):
        raise ApiError(403, "the device's owner has blocked this user", "BLOCKED_BY_RECIPIENT")
    s = state.settings
    await enforce_limit(state, "claims_per_requester", who.user_id, s.claim_limit_per_requester)
    await enforce_limit(state, "claims_per_device", device_id, s.claim_limit_per_device)
    bundle = await state.store.claim_prekey(device_id, who.user_id, s.signed_prekey_max_age_days)
    state.telemetry.claims.inc()
    otpk = bundle["one_time_prekey"]
    return {
        "device_id": str(device_id),
        "user_id": bundle["user_id"],
        "identity_key": b64(bytes(bundle["identity_key"])),
        "bundle_version": bundle["bundle_version"],
        "signed_prekey": {
            "key_id": bundle["signed_prekey_id"],
            "public_key": b64(bytes(bundle["signed_prekey_public"])),
            "signature": b64(bytes(bundle["signed_prekey_signature"])),
        },
        "one_time_prekey": {"key_id": otpk["key_id"], "public_key": b64(bytes(otpk["public_key"]))},
    }
