"""The shapes of the API's answers that the toolkit draws conclusions from.

Validated strictly: `"relay_lag": "false"` (a string) is not a boolean, and an answer
that does not fit is unreadable (ServiceError, so UNKNOWN), never a guess. Fields the
toolkit does not read pass through unchecked (`extra="allow"`), so a newer server
with more fields is still understood.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class HealthAnswer(_Answer):
    status: str = "unknown"
    database: str = "unknown"
    redis: str = "unknown"
    e2ee_dm_enabled: bool | None = None
    version: str | None = None
    instance_id: str | None = None


class RelayAnswer(_Answer):
    """`/dm/metrics` and `/live-chat/metrics`: what Redis detection reads."""

    redis_status: str
    relay_lag: bool
    pubsub_lag_seconds: float | None = Field(default=None, ge=0)


class HeartbeatData(_Answer):
    """The data of an SSE `heartbeat` event."""

    relay_lag: bool
    redis_status: str | None = None


def check_answer(model: type[_Answer], body: dict[str, Any]) -> dict[str, Any]:
    """`body` validated against `model`, as a plain dict; raises ValueError naming the
    first field that does not fit (the caller words it for the operator)."""
    try:
        return model.model_validate(body).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the answer)"
        raise ValueError(f"{where}: {first['msg']}") from None
