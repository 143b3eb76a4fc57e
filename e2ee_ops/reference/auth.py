"""Bearer tokens: generated once, stored as SHA-256, resolved to a caller per request
(from the token cache when it holds the token, see `tokens.py`)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from e2ee_ops.reference.store import Store
from e2ee_ops.reference.tokens import Resolved, TokenCache

TOKEN_PREFIX = "e2ee_"
_bearer = HTTPBearer(auto_error=False)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Caller:
    user_id: int
    scope: str
    blocked: bool
    token_hash: str

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "missing or invalid bearer token")
    state = request.app.state.e2ee
    who = await resolve_caller(state.tokens, state.store, credentials.credentials)
    if who is None:
        raise HTTPException(401, "missing or invalid bearer token")
    return who


async def resolve_caller(tokens: TokenCache, store: Store, token: str) -> Caller | None:
    """The caller a bearer token names (from the token cache when it holds it), or None
    when the token is unknown or revoked."""
    token_hash = hash_token(token)
    resolved = tokens.get(token_hash)
    if resolved is None:
        generation = tokens.generation
        row = await store.resolve_token(token_hash)
        if row is None:
            return None
        resolved = Resolved(int(row["user_id"]), row["scope"], row["blocked_at"] is not None)
        tokens.put(token_hash, resolved, generation)
    return Caller(
        user_id=resolved.user_id,
        scope=resolved.scope,
        blocked=resolved.blocked,
        token_hash=token_hash,
    )


async def admin(who: Caller = Depends(caller)) -> Caller:
    if not who.is_admin:
        raise HTTPException(403, "admin scope required")
    return who
