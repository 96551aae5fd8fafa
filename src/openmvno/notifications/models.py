"""The outbox: every side effect on the outside world, written in the same
transaction as the change that caused it and delivered by the worker."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
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
    line_barring = "line_barring"
    """Bar or lift a line's data service at the network (``payload.action``), see
    :mod:`openmvno.usage.barring`."""
    card_detach = "card_detach"
    """Forget a removed saved card at its provider (``payload.card_id``)."""
    line_state = "line_state"
    """Suspend, restrict, restore or terminate a line at the network (``payload.action``),
    see :mod:`openmvno.lines.lifecycle`."""


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


class Notice(IdMixin, Base):
    """One subscriber notice, recorded once per ``key`` (the UNIQUE key makes a notice
    exactly-once whatever the number of workers, retries or crashes); its SMS and email are
    outbox rows whose dedupe keys name this row."""

    __tablename__ = "notices"

    key: Mapped[str] = mapped_column(String(200), unique=True)
    event: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"), index=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    channels: Mapped[str] = mapped_column(String(20), default="")
    """The channels it was queued on (``sms``, ``email``, ``sms,email``; empty: no way to
    reach the subscriber, or a marketing notice they opted out of)."""
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class NotificationPreference(Base):
    """A subscriber's choice of channels for notices and their marketing consent. No row
    means the defaults: SMS and email on, marketing off."""

    __tablename__ = "notification_preferences"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    sms: Mapped[bool] = mapped_column(default=True)
    email: Mapped[bool] = mapped_column(default=True)
    marketing: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class NoticeTemplate(IdMixin, Base):
    """An operator's own text for one event in one language on one channel, used instead
    of the built-in (translated) text; changed through the admin API, no release needed."""

    __tablename__ = "notice_templates"
    __table_args__ = (
        UniqueConstraint("event", "language", "channel", name="uq_notice_templates_event"),
    )

    event: Mapped[str] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)
