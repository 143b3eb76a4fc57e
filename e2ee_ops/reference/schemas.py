"""Request bodies of the reference API (responses are plain JSON objects)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    email: str | None = Field(default=None, max_length=254)


class NewToken(BaseModel):
    scope: str = Field(default="user", pattern=r"^(user|admin)$")


class BlockRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class SignedPrekeyIn(BaseModel):
    key_id: int = Field(ge=0)
    public_key: str
    signature: str


class OneTimePrekeyIn(BaseModel):
    key_id: int = Field(ge=0)
    public_key: str


class NewDevice(BaseModel):
    device_name: str = Field(min_length=1, max_length=100)
    identity_key: str
    signed_prekey: SignedPrekeyIn
    one_time_prekeys: list[OneTimePrekeyIn] = Field(default_factory=list, max_length=1000)


class PrekeyUpload(BaseModel):
    one_time_prekeys: list[OneTimePrekeyIn] = Field(min_length=1, max_length=1000)


class IdentityChange(BaseModel):
    identity_key: str
    signed_prekey: SignedPrekeyIn


class NewConversation(BaseModel):
    peer_user_id: int


class EnvelopeIn(BaseModel):
    device_id: str
    bundle_version: int = Field(ge=1)
    ciphertext: str = Field(min_length=1, max_length=262144)


class NewMessage(BaseModel):
    sender_device_id: str
    client_message_id: str = Field(min_length=1, max_length=128)
    envelopes: list[EnvelopeIn] = Field(min_length=1, max_length=100)


class AckRequest(BaseModel):
    message_ids: list[int] = Field(min_length=1, max_length=1000)


class UserBlock(BaseModel):
    user_id: int
