"""Bearer tokens: generated once, stored as SHA-256, resolved to a caller per request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
    token_hash = hash_token(credentials.credentials)
    row = await request.app.state.e2ee.store.resolve_token(token_hash)
    if row is None:
        raise HTTPException(401, "missing or invalid bearer token")
    return Caller(
        user_id=int(row["user_id"]),
        scope=row["scope"],
        blocked=row["blocked_at"] is not None,
        token_hash=token_hash,
    )


async def admin(who: Caller = Depends(caller)) -> Caller:
    if not who.is_admin:
        raise HTTPException(403, "admin scope required")
    return who
