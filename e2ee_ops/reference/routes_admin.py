"""Admin endpoints: accounts, tokens, blocks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from e2ee_ops.reference.auth import Caller, admin, hash_token, new_token
from e2ee_ops.reference.schemas import BlockRequest, IdPath, NewToken, NewUser
from e2ee_ops.reference.state import app_state
from e2ee_ops.reference.store import Row, as_datetime_str

router = APIRouter(prefix="/admin")


def _user_view(row: Row) -> dict[str, Any]:
    return {
        "account_id": row["account_id"],
        "username": row.get("username"),
        "email": row.get("email"),
        "blocked": row["blocked_at"] is not None,
        "block_reason": row["block_reason"],
        "blocked_at": as_datetime_str(row["blocked_at"]),
    }


@router.post("/users", status_code=201)
async def create_user(body: NewUser, request: Request, _: Caller = Depends(admin)) -> Row:
    return await app_state(request).store.create_user(body.username, body.email)


@router.get("/users/{account_id}")
async def get_user(
    account_id: IdPath, request: Request, _: Caller = Depends(admin)
) -> dict[str, Any]:
    return _user_view(await app_state(request).store.get_user(account_id))


@router.post("/users/{account_id}/tokens", status_code=201)
async def create_token(
    account_id: IdPath, body: NewToken, request: Request, _: Caller = Depends(admin)
) -> dict[str, Any]:
    token = new_token()
    token_id = await app_state(request).store.add_token(account_id, hash_token(token), body.scope)
    return {"token": token, "token_id": token_id, "scope": body.scope}


@router.delete("/tokens/{token_id}")
async def revoke_token(
    token_id: IdPath, request: Request, _: Caller = Depends(admin)
) -> dict[str, Any]:
    state = app_state(request)
    token_hash = await state.store.revoke_token(token_id)
    await state.relay.publish_forget(token_hashes=[token_hash])
    return {"token_id": token_id, "revoked": True}


@router.post("/users/{account_id}/block")
async def block_user(
    account_id: IdPath, body: BlockRequest, request: Request, who: Caller = Depends(admin)
) -> dict[str, Any]:
    state = app_state(request)
    await state.store.set_block(account_id, body.reason, who.user_id)
    await state.relay.publish_forget(user_ids=[account_id])
    return _user_view(await state.store.get_user(account_id))


@router.delete("/users/{account_id}/block")
async def unblock_user(
    account_id: IdPath, request: Request, _: Caller = Depends(admin)
) -> dict[str, Any]:
    state = app_state(request)
    await state.store.set_block(account_id, None, None)
    await state.relay.publish_forget(user_ids=[account_id])
    return _user_view(await state.store.get_user(account_id))
