"""State of the built-in **sandbox** payment service.

The sandbox pretends to be an outside payment company, so it keeps its own table
(it must survive a restart like a real provider would) and its own webhook
delivery queue (``webhook_due_at`` / ``webhook_attempts``), and its refunds in
``sandbox_refunds``. Card data is never stored: only the brand and the last four digits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin, TimestampMixin


class SandboxPayment(IdMixin, TimestampMixin, Base):
    __tablename__ = "sandbox_payments"
    __table_args__ = (Index("ix_sandbox_payments_webhook_due_at", "webhook_due_at"),)

    reference: Mapped[str] = mapped_column(String(40), unique=True)
    attempt_id: Mapped[str] = mapped_column(String(64), unique=True)
    """One sandbox payment per attempt: ``create()`` is idempotent on it."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="requires_action")
    """``requires_action`` → ``processing`` | ``succeeded`` | ``failed``."""
    stage: Mapped[str] = mapped_column(String(20), default="pay")
    """Where the payer is on the hosted page: ``pay`` or ``3ds`` (challenge shown)."""
    failure_code: Mapped[str | None] = mapped_column(String(40))
    return_url: Mapped[str] = mapped_column(String(2000))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    webhook_event_id: Mapped[str | None] = mapped_column(String(40))
    """Id of the outcome event; stays the same across delivery retries."""
    webhook_due_at: Mapped[datetime | None]
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0)
    webhook_last_error: Mapped[str] = mapped_column(String(300), default="")
    webhook_delivered_at: Mapped[datetime | None]


class SandboxRefund(IdMixin, TimestampMixin, Base):
    """A refund the sandbox made. UNIQUE ``idempotency_key``: the same key asked again
    returns this refund, never a second one (as a real provider's idempotency keys do)."""

    __tablename__ = "sandbox_refunds"

    refund_id: Mapped[str] = mapped_column(String(40), unique=True)
    reference: Mapped[str] = mapped_column(String(40), index=True)
    """The refunded payment's reference."""
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="succeeded")


class SandboxSetup(IdMixin, TimestampMixin, Base):
    """A "save a card" session on the sandbox's hosted page (``/sandbox/setup/{reference}``).
    One per setup id of ours (``create`` is idempotent on it)."""

    __tablename__ = "sandbox_setups"

    reference: Mapped[str] = mapped_column(String(40), unique=True)
    setup_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_ref: Mapped[str] = mapped_column(String(40))
    return_url: Mapped[str] = mapped_column(String(2000))
    status: Mapped[str] = mapped_column(String(20), default="requires_action")
    """``requires_action`` → ``succeeded`` | ``failed``."""
    failure_code: Mapped[str | None] = mapped_column(String(40))
    card_token: Mapped[str | None] = mapped_column(String(40))


class SandboxCard(IdMixin, TimestampMixin, Base):
    """A card saved at the sandbox: the reusable token and what a receipt may show
    (brand, last four digits, expiry). Never the number or the security code; the test
    behaviour (``charges``) is all the sandbox remembers of which test card it was."""

    __tablename__ = "sandbox_cards"

    token: Mapped[str] = mapped_column(String(40), unique=True)
    customer_ref: Mapped[str] = mapped_column(String(40), index=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    charges: Mapped[str] = mapped_column(String(20), default="succeed")
    """``succeed`` or ``insufficient_funds`` (saved fine, every off-session charge declined)."""
    detached_at: Mapped[datetime | None]


class SandboxCharge(Base):
    """An off-session charge of a saved sandbox card. UNIQUE ``idempotency_key``: the
    same key asked again answers with this charge (written set-based, one statement per
    batch, see :meth:`SandboxProvider.charge_saved`)."""

    __tablename__ = "sandbox_charges"

    reference: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    token: Mapped[str] = mapped_column(String(40))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20))
    """``succeeded`` or ``declined``."""
    decline_code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
