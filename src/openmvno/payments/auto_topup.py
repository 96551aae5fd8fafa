"""Auto top-up of the wallet (TM Forum ``isAutoTopup``): when an account's wallet falls
below the threshold its holder set, charge a saved card a set amount, at most N times a
calendar month (in the operator's time zone).

The worker job :func:`run_due` (contract 2) does one batch:

1. claims due settings with one statement (``UPDATE … SET claimed_until = now + lease
   WHERE id IN (SELECT … wallet below threshold, fewer than N top-ups this month, not
   claimed, not backing off … LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …``);
2. in one unit of work, writes this month's next top-up per account
   (``auto_topup_runs``, UNIQUE(account, month, seq) with ``seq ≤ N`` decided in the
   same INSERT … SELECT, so N is never exceeded, without a check-then-insert); a top-up
   left ``charging`` by a crash is taken up again instead of a new one;
3. charges the cards with :func:`openmvno.payments.cards.charge_cards` (no transaction
   open; the top-up's key is the charge key, so a re-run never charges twice);
4. in one unit of work, credits the wallets through the ledger (entry key
   ``auto-topup:<top-up key>``: once ever), settles the top-ups, queues the
   ``auto_topup_done`` notices, and releases the claims. A declined card backs off
   (``auto_topup_retry_hours``) and counts toward the month's N.
"""

from __future__ import annotations

import enum
import logging
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin, TimestampMixin, str_enum

log = logging.getLogger("openmvno.payments.auto_topup")


class TopupState(enum.StrEnum):
    charging = "charging"
    succeeded = "succeeded"
    declined = "declined"


class AutoTopup(IdMixin, TimestampMixin, Base):
    """One account's auto top-up settings (at most one per account)."""

    __tablename__ = "auto_topups"
    __table_args__ = (Index("ix_auto_topups_due", "enabled", "next_try_at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3))
    threshold_minor: Mapped[int] = mapped_column(BigInteger)
    """Top up when the wallet holds less than this."""
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("saved_cards.id"))
    """The card to charge; ``None`` (or a card since removed): the default card."""
    max_per_month: Mapped[int] = mapped_column(Integer)
    next_try_at: Mapped[datetime | None]
    """After a declined card: not before this."""
    claimed_until: Mapped[datetime | None]
    last_failure_code: Mapped[str | None] = mapped_column(String(40))


class AutoTopupRun(IdMixin, TimestampMixin, Base):
    """One top-up: UNIQUE(account, month, seq), seq 1…N; ``key`` is the charge's
    idempotency key and (prefixed) the ledger entry's."""

    __tablename__ = "auto_topup_runs"
    __table_args__ = (UniqueConstraint("account_id", "period", "seq"),)

    key: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    period: Mapped[str] = mapped_column(String(7))
    """The calendar month in the operator's time zone, ``YYYY-MM``."""
    seq: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[TopupState] = mapped_column(
        str_enum(TopupState, 20), default=TopupState.charging
    )
    attempt_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_attempts.id"))
    decline_code: Mapped[str | None] = mapped_column(String(40))
