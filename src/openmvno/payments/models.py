"""Payment attempts, provider refunds and the provider webhook inbox.

Attempt states: ``created → requires_action → succeeded | failed``.
Refund states: ``requested → sent → succeeded | failed`` (``requested → succeeded`` when
the provider answers at once).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, TimestampMixin, str_enum


class PaymentMethodKind(enum.StrEnum):
    card = "card"
    alipay = "alipay"
    wechat_pay = "wechat_pay"
    bank_transfer = "bank_transfer"
    wallet = "wallet"
    free = "free"
    """A zero-price order: fulfilled at once, nothing to pay."""


class AttemptState(enum.StrEnum):
    created = "created"
    requires_action = "requires_action"
    succeeded = "succeeded"
    failed = "failed"


class PaymentAttempt(IdMixin, TimestampMixin, Base):
    __tablename__ = "payment_attempts"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref"),
        Index("ix_payment_attempts_state_created", "state", "created_at"),
    )

    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), index=True)
    """The order paid; ``None`` for an off-session charge of a saved card
    (:func:`openmvno.payments.cards.charge_cards`), whose caller makes its order after."""
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    """Saved-card charges only: the caller's key (one attempt per key, ever)."""
    saved_card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("saved_cards.id"))
    """Saved-card charges only: the card charged."""
    method: Mapped[PaymentMethodKind] = mapped_column(str_enum(PaymentMethodKind, 20))
    provider_ref: Mapped[str | None] = mapped_column(String(120))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[AttemptState] = mapped_column(
        str_enum(AttemptState, 20), default=AttemptState.created
    )
    failure_code: Mapped[str | None] = mapped_column(String(40))
    next_action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the payer does next: ``{"type": "redirect", "url": ...}``, a QR, a bank reference."""
    settled_at: Mapped[datetime | None]


class ExternalEvent(IdMixin, Base):
    """A webhook as received. UNIQUE(source, external_id): a replay is a no-op."""

    __tablename__ = "external_events"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    source: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(120))
    event_type: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
    handled_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(200), default="")


class RefundReason(enum.StrEnum):
    order_cancelled = "order_cancelled"
    """The money arrived after the order was cancelled."""
    already_paid = "already_paid"
    """A second payment for an order another payment had already paid."""
    fulfilment_failed = "fulfilment_failed"
    """The order was paid but could not be carried out."""
    staff = "staff"
    """A staff refund of the order."""


class RefundState(enum.StrEnum):
    requested = "requested"
    sent = "sent"
    succeeded = "succeeded"
    failed = "failed"


class PaymentRefund(IdMixin, TimestampMixin, Base):
    """Money paid back at the provider, tracked to completion. At most one per payment
    attempt (UNIQUE ``idempotency_key`` = ``attempt:<attempt id>``); sent by the worker
    from the outbox, with our refund ``id`` as the provider's idempotency key, so a
    retried delivery never refunds twice."""

    __tablename__ = "payment_refunds"

    attempt_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_attempts.id"), index=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_ref: Mapped[str] = mapped_column(String(120))
    """The payment's reference at the provider (what is refunded)."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[RefundReason] = mapped_column(str_enum(RefundReason, 20))
    state: Mapped[RefundState] = mapped_column(
        str_enum(RefundState, 20), default=RefundState.requested
    )
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(120))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the provider was asked."""
    last_error: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
