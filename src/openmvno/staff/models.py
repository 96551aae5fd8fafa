"""Tables of the staff domain (migration ``20261202_console``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin


class StaffSession(IdMixin, Base):
    """A console session (agent or admin): hash of the cookie at rest, its CSRF secret,
    whether the second factor was passed, an absolute and an idle expiry."""

    __tablename__ = "staff_sessions"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    second_factor_done: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime]
    idle_until: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class StaffTotp(Base):
    """A staff member's TOTP secret (base32); ``enabled_at`` once a first code was right.
    ``last_step`` refuses a code used twice."""

    __tablename__ = "staff_totp"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    secret: Mapped[str] = mapped_column(String(64))
    enabled_at: Mapped[datetime | None]
    last_step: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class CallerVerification(IdMixin, Base):
    """An agent verified a caller as the holder of an account, until ``expires_at``."""

    __tablename__ = "caller_verifications"
    __table_args__ = (Index("ix_caller_verifications_staff_account", "staff_id", "account_id"),)

    staff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(24))
    verified_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]


class AccountNote(IdMixin, Base):
    """A staff note on a subscriber's account."""

    __tablename__ = "account_notes"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class RuntimeSetting(Base):
    """An operator setting changed at run time (``payment_methods.disabled``...), read by
    every process through a short cache (:mod:`openmvno.staff.runtime_settings`)."""

    __tablename__ = "runtime_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
