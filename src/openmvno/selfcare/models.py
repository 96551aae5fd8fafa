"""Pending SMS confirmations and the inbound messages already taken (replay guard)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin


class SmsConfirmation(IdMixin, Base):
    """A ``BUY <code>`` waiting for ``YES`` from the same phone until ``expires_at``; used
    once (``used_at``, set by one conditional UPDATE), its id is the order's idempotency key."""

    __tablename__ = "sms_confirmations"
    __table_args__ = (Index("ix_sms_confirmations_msisdn_expires", "msisdn", "expires_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                                  index=True)
    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    msisdn: Mapped[str] = mapped_column(String(20))
    plan_code: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class InboundMessage(IdMixin, Base):
    """An MO message taken from a gateway, once per (channel, gateway message id): a replayed
    POST or a redelivered ``deliver_sm`` runs no command twice."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_inbound_messages_channel_external"),
    )

    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(120))
    sender: Mapped[str] = mapped_column(String(20))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
