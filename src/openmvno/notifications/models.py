"""The outbox: every side effect on the outside world, written in the same
transaction as the change that caused it and delivered by the worker."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, str_enum


class OutboxKind(enum.StrEnum):
    sms = "sms"
    email = "email"
    provision = "provision"
    refund = "refund"
    """A provider refund (``payload.refund_id``), see :mod:`openmvno.payments.refunds`."""
    payment_cancel = "payment_cancel"
    """Stop an open provider payment of a cancelled order (``payload.attempt_id``)."""


class OutboxState(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    dead = "dead"


class OutboxMessage(IdMixin, Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "state", "next_attempt_at"),)

    kind: Mapped[OutboxKind] = mapped_column(str_enum(OutboxKind, 16))
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[OutboxState] = mapped_column(
        str_enum(OutboxState, 16),
        default=OutboxState.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=clock.now)
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
    sent_at: Mapped[datetime | None]
