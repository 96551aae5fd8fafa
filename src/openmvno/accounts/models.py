"""Accounts (subscribers and staff), one-time codes and auth tokens."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, TimestampMixin, str_enum


class Role(enum.StrEnum):
    subscriber = "subscriber"
    agent = "agent"
    admin = "admin"


class CodePurpose(enum.StrEnum):
    verify = "verify"
    reset_password = "reset_password"  # noqa: S105 - a purpose, not a secret
    caller_check = "caller_check"


class Channel(enum.StrEnum):
    sms = "sms"
    email = "email"


class TokenKind(enum.StrEnum):
    access = "access"
    refresh = "refresh"
    session = "session"


class Account(IdMixin, TimestampMixin, Base):
    """A person who logs in: a subscriber, or staff (agent, admin)."""

    __tablename__ = "accounts"

    role: Mapped[Role] = mapped_column(str_enum(Role, 24), default=Role.subscriber)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    verified_at: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)


class OneTimeCode(IdMixin, Base):
    """A 6-digit code sent by SMS or email; only its hash is kept."""

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_one_time_codes_target_created", "target", "created_at"),)

    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[CodePurpose] = mapped_column(str_enum(CodePurpose, 24))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, 24))
    target: Mapped[str] = mapped_column(String(254))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime]
    resend_after: Mapped[datetime]
    used_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class AuthToken(IdMixin, Base):
    """Bearer access token, refresh token or portal session (hash at rest)."""

    __tablename__ = "auth_tokens"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[TokenKind] = mapped_column(str_enum(TokenKind, 24))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4, index=True)
    csrf_secret: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
