"""One row per renewed line and period, written by the set-based renewal batch
(``renewals.batch.renew_batch``, contract 7).

UNIQUE ``(line_id, period_key)``: a line's period is renewed exactly once, however many
workers, retries or crashes; ``period_key`` is the expiry being renewed as ISO UTC
(``renewals.schedule.period_key``). ``order_id`` is the fulfilled order the renewal shows
as in the history and receipts; ``payment_attempt_id`` is the captured card charge (or
the wallet payment's attempt). ``account_id``, ``plan_id`` and ``payment_attempt_id``
are copies of the order's, so only ``line_id`` and ``order_id`` are foreign keys on
PostgreSQL (migration 20261202_storm: each check locks the parent row).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, str_enum


class RunFunding(enum.StrEnum):
    wallet = "wallet"
    card = "card"


class RenewalRun(IdMixin, Base):
    __tablename__ = "renewal_runs"
    __table_args__ = (UniqueConstraint("line_id", "period_key"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(index=True)
    plan_id: Mapped[uuid.UUID]
    period_key: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    funding: Mapped[RunFunding] = mapped_column(str_enum(RunFunding, 8))
    payment_attempt_id: Mapped[uuid.UUID | None]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
