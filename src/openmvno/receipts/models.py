"""Receipts and gapless sequences (receipt numbers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin


class Sequence(Base):
    """A named counter; ``UPDATE ... SET value = value + 1 RETURNING value`` under a row lock."""

    __tablename__ = "sequences"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Receipt(IdMixin, Base):
    __tablename__ = "receipts"

    number: Mapped[str] = mapped_column(String(24), unique=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    """The order's account, copied (no foreign key of its own on PostgreSQL, see migration
    20261202_storm)."""
    buyer: Mapped[str] = mapped_column(String(100), default="")
    msisdn: Mapped[str | None] = mapped_column(String(20))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(20), default="")
    issued_at: Mapped[datetime] = mapped_column(default=clock.now)
