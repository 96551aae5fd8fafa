"""What the SMPP sender records about each part it submits (beside the outbox row).

One row per SMS part, written *before* its ``submit_sm`` goes out (``sending``), then
``accepted`` with the SMSC's message id, and ``delivered`` / ``failed`` when the delivery
receipt comes. A part left ``sending`` (the link dropped before the answer) is *in doubt*:
it may have reached the SMSC, so it is only sent again once no receipt has claimed it for
``smpp_in_doubt_seconds`` (a receipt for an unknown message id is matched to the in-doubt
part of the same phone, by the user reference the SMSC echoes, else the oldest).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, str_enum


class PartState(enum.StrEnum):
    new = "new"
    """Not sent yet (or refused with "not now": throttled, queue full)."""
    sending = "sending"
    """Submitted, no answer recorded: in doubt until a receipt or the in-doubt wait."""
    accepted = "accepted"
    delivered = "delivered"
    failed = "failed"
    """The SMSC refused it for good, or its receipt says it never arrived."""


class SmsPart(IdMixin, Base):
    __tablename__ = "sms_parts"
    __table_args__ = (
        UniqueConstraint("outbox_id", "seq", name="uq_sms_parts_outbox_seq"),
        Index("ix_sms_parts_recipient_state", "recipient", "state"),
    )

    outbox_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    seq: Mapped[int]
    total: Mapped[int]
    concat_ref: Mapped[int]
    """The UDH reference of a long message (the same on every resend of its parts)."""
    user_reference: Mapped[int]
    """``user_message_reference`` sent with the part (SMSCs echo it in the receipt)."""
    state: Mapped[PartState] = mapped_column(str_enum(PartState, 16), default=PartState.new)
    message_id: Mapped[str | None] = mapped_column(String(65), unique=True)
    submits: Mapped[int] = mapped_column(default=0)
    bind: Mapped[str] = mapped_column(String(40), default="")
    """Which ``openmvno smpp`` process sent it last."""
    error: Mapped[str] = mapped_column(String(200), default="")
    submitted_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    receipt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
