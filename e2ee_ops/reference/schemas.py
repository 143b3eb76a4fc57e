"""Request bodies of the reference API (responses are plain JSON objects).

Every constraint the database has is declared here, so a bad input is a 422 naming
its field rather than a database error: text never holds a NUL byte (PostgreSQL
TEXT cannot store one), integers fit their columns, ids are ids.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, Field, model_validator

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
# PostgreSQL TEXT cannot hold a NUL byte.
_TEXT = r"^[^\x00]*$"

Int4 = Annotated[int, Field(ge=0, le=INT4_MAX)]
Id = Annotated[int, Field(ge=1, le=INT8_MAX)]


def _distinct_devices(envelopes: list[EnvelopeIn]) -> list[EnvelopeIn]:
    seen: set[uuid.UUID] = set()
    for envelope in envelopes:
        if envelope.device_id in seen:
            raise ValueError(f"device {envelope.device_id} has more than one envelope")
        seen.add(envelope.device_id)
    return envelopes


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    email: str | None = Field(default=None, max_length=254, pattern=_TEXT)


class NewToken(BaseModel):
    scope: str = Field(default="user", pattern=r"^(user|admin)$")


class BlockRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=_TEXT)


class SignedPrekeyIn(BaseModel):
    key_id: Int4
    public_key: str = Field(max_length=1024)
    signature: str = Field(max_length=1024)


class OneTimePrekeyIn(BaseModel):
    key_id: Int4
    public_key: str = Field(max_length=1024)


class NewDevice(BaseModel):
    device_name: str = Field(min_length=1, max_length=100, pattern=_TEXT)
    identity_key: str = Field(max_length=1024)
    signed_prekey: SignedPrekeyIn
    one_time_prekeys: list[OneTimePrekeyIn] = Field(default_factory=list, max_length=1000)


class PrekeyUpload(BaseModel):
    one_time_prekeys: list[OneTimePrekeyIn] = Field(min_length=1, max_length=1000)


class IdentityChange(BaseModel):
    identity_key: str = Field(max_length=1024)
    signed_prekey: SignedPrekeyIn


class NewConversation(BaseModel):
    peer_user_id: Id


class EnvelopeIn(BaseModel):
    device_id: uuid.UUID
    bundle_version: int = Field(ge=1, le=INT4_MAX)
    ciphertext: str = Field(min_length=1, max_length=262144)


class NewMessage(BaseModel):
    sender_device_id: uuid.UUID
    client_message_id: str = Field(min_length=1, max_length=128, pattern=_TEXT)
    envelopes: Annotated[list[EnvelopeIn], AfterValidator(_distinct_devices)] = Field(
        min_length=1, max_length=100
    )


class AckRequest(BaseModel):
    """Either `message_ids` (these messages) or `up_to` (every message up to this id
    that the server has pushed to the device): exactly one of them."""

    message_ids: list[Id] | None = Field(default=None, min_length=1, max_length=1000)
    up_to: Id | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AckRequest:
        if (self.message_ids is None) == (self.up_to is None):
            raise ValueError("give either message_ids or up_to")
        return self


class UserBlock(BaseModel):
    user_id: Id


# Ids in the path and the query, bounded by their BIGINT columns.
IdPath = Annotated[int, Path(ge=0, le=INT8_MAX)]
AfterQuery = Annotated[int, Query(ge=0, le=INT8_MAX)]
LimitQuery = Annotated[int, Query(ge=1, le=500)]
