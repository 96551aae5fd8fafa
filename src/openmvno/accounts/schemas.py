"""API shapes for accounts and auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openmvno.accounts.models import Channel, Role
from openmvno.fields import Email, Login, Name, OneTimeCode, OpaqueToken, Phone, Strict


class RegisterIn(Strict):
    name: Name
    phone: Phone | None = None
    email: Email | None = None
    password: str = Field(max_length=128)
    language: Literal["zh-CN", "en"] | None = None
    code_channel: Channel | None = None


class VerifyIn(Strict):
    login: Login = Field(description="Phone number or email")
    code: OneTimeCode


class ResendIn(Strict):
    login: Login
    channel: Channel | None = Field(default=None, description="sms or email; default sms")
    purpose: Literal["verify", "reset_password"] = "verify"


class TokenIn(Strict):
    login: Login
    password: str = Field(max_length=128)


class RefreshIn(Strict):
    refresh_token: OpaqueToken


class ResetIn(Strict):
    login: Login
    code: OneTimeCode
    new_password: str = Field(max_length=128)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class CodeSentOut(BaseModel):
    """The same answer whether or not an account uses the login."""

    login: str = Field(description="The login in its stored form (E.164 phone or email)")
    channel: Channel
    resend_after_seconds: int
    expires_in_seconds: int


class VerifiedOut(BaseModel):
    verified: Literal[True] = True


class PasswordChangedOut(BaseModel):
    password_changed: Literal[True] = True


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: Role
    name: str
    phone: str | None
    email: str | None
    language: str
    verified: bool
    created_at: datetime
