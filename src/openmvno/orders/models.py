"""Orders: a new line, a plan (buy or renew), an add-on, a wallet top-up, or a
guest top-up to a phone number. State machine::

    pending_payment ──► paid ──► fulfilled ──► refunded
          │               └────► failed (fulfilment impossible; refunded or retried)
          └──► cancelled (allowed until paid)

Fulfilment commits in the same transaction as the payment's success.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin, TimestampMixin, str_enum


class OrderKind(enum.StrEnum):
    new_line = "new_line"
    plan = "plan"
    addon = "addon"
    topup = "topup"
    guest_topup = "guest_topup"


class OrderState(enum.StrEnum):
    pending_payment = "pending_payment"
    paid = "paid"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    refunded = "refunded"
    failed = "failed"


class ProvisioningState(enum.StrEnum):
    not_needed = "not_needed"
    pending = "pending"
    done = "done"
    failed = "failed"


class Order(IdMixin, TimestampMixin, Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("idempotency_scope", "idempotency_key"),
        Index("ix_orders_account_created", "account_id", "created_at"),
    )

    number: Mapped[str] = mapped_column(String(24), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"))
    """The buyer; None for a guest top-up."""
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"), index=True)
    """The line the order is for (for a guest top-up: the line confirmed at look-up)."""
    credited_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id"), index=True
    )
    """A guest top-up: the owner of the number when the guest confirmed it; fulfilment
    credits this account only (never whoever holds the number when the payment lands)."""
    guest_link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """A guest order: SHA-256 (hex) of its link token, the only way a guest reaches it
    (the token itself is never stored)."""
    msisdn: Mapped[str | None] = mapped_column(String(20))
    kind: Mapped[OrderKind] = mapped_column(str_enum(OrderKind, 20))
    plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(200), default="")
    idempotency_scope: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[OrderState] = mapped_column(
        str_enum(OrderState, 20), default=OrderState.pending_payment
    )
    failure_code: Mapped[str | None] = mapped_column(String(40))
    provisioning: Mapped[ProvisioningState] = mapped_column(
        str_enum(ProvisioningState, 20), default=ProvisioningState.not_needed
    )
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What fulfilment did: new expiry, granted buckets, activation code reference."""
    paid_at: Mapped[datetime | None]
    fulfilled_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
