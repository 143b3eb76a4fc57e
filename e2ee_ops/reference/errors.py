"""API errors with machine-readable codes, and the handlers that render and count them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from e2ee_ops.reference.crypto import KeyError_
from e2ee_ops.reference.store import Conflict, NotFound

DM_DISABLED_DETAIL = "E2EE DM is not enabled"
LOGGED_STATUSES = frozenset({403, 409, 429})
log = logging.getLogger("e2ee_ops.reference.api")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code
        self.extra = extra or {}
        self.headers = headers


def _respond(request: Request, err: ApiError) -> JSONResponse:
    request.state.error_code = err.code
    if err.status in LOGGED_STATUSES:
        # The runbook: "Log all 409, 429, 403 errors with context" (never bodies or tokens).
        log.warning(
            "refused %s %s -> %s %s", request.method, request.url.path, err.status, err.code or "-"
        )
    body: dict[str, Any] = {"detail": err.detail}
    if err.code is not None and err.code != "DM_DISABLED":
        # The runbook's rollback check expects exactly {"detail": "E2EE DM is not enabled"}.
        body["code"] = err.code
    body.update(err.extra)
    return JSONResponse(body, status_code=err.status, headers=err.headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _respond(request, exc)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Conflict)
    return _respond(request, ApiError(409, exc.detail, exc.code))


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return _respond(request, ApiError(404, str(exc)))


async def _bad_key(request: Request, exc: Exception) -> JSONResponse:
    return _respond(request, ApiError(422, str(exc), "BAD_SIGNATURE"))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the input back: it may hold key material or ciphertext.
    problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
    return JSONResponse({"detail": problems}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = "DM_DISABLED" if exc.detail == DM_DISABLED_DETAIL else None
    return _respond(
        request,
        ApiError(exc.status_code, str(exc.detail), code, headers=dict(exc.headers or {})),
    )


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
HANDLERS: dict[type[Exception], Handler] = {
    ApiError: _api_error,
    Conflict: _conflict,
    NotFound: _not_found,
    KeyError_: _bad_key,
    RequestValidationError: _validation,
    HTTPException: _http_error,
}


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)


async def error_response(request: Request, exc: Exception) -> JSONResponse | None:
    """The answer `install`'s handlers give `exc` (the nearest class in its MRO, as
    Starlette looks them up), or None for an error they do not handle."""
    for kind in type(exc).__mro__:
        handler = HANDLERS.get(kind)
        if handler is not None:
            return await handler(request, exc)
    return None
