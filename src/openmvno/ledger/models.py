"""Balances as buckets and an append-only journal of entries.

A **bucket** holds one kind of balance for a line (data bytes, voice seconds,
SMS count) or for an account (the money wallet, in minor units), valid for a
period. Every change is a **BalanceEntry** with a signed ``delta`` and a UNIQUE
``idempotency_key``: replaying a change inserts nothing. Invariant, always:
``bucket.remaining == sum(entry.delta for its entries)`` and ``remaining >= 0``.
``reserved`` is quota held for in-flight sessions (Diameter Gy), not yet settled.

The database keeps the books itself (migration ``2026_12_02_ledger_books``): inserting
an entry applies its delta to the bucket (a trigger), ``remaining`` cannot be changed
any other way, a new bucket starts empty, and entries are never updated or deleted.
Code only ever INSERTs entries (``ledger.service``, ``ledger.batch``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, BigInt, IdMixin, TimestampMixin, str_enum


class BucketKind(enum.StrEnum):
    data = "data"
    voice = "voice"
    sms = "sms"
    money = "money"


class EntryReason(enum.StrEnum):
    grant = "grant"
    usage = "usage"
    expire = "expire"
    adjust = "adjust"
    transfer = "transfer"
    refund = "refund"
    topup = "topup"
    payment = "payment"


class Bucket(IdMixin, TimestampMixin, Base):
    __tablename__ = "buckets"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_non_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= remaining", name="reserved_within"),
        Index("ix_buckets_line_kind", "line_id", "kind", "valid_until"),
        Index(
            "uq_buckets_wallet",
            "account_id",
            "currency",
            unique=True,
            sqlite_where=text("kind = 'money'"),
            postgresql_where=text("kind = 'money'"),
        ),
        # Room on each page for the bucket's updates (its grant, then usage): HOT updates.
        {"postgresql_with": {"fillfactor": 50}},
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    line_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("lines.id"))
    kind: Mapped[BucketKind] = mapped_column(str_enum(BucketKind, 8))
    currency: Mapped[str | None] = mapped_column(String(3))
    """Set for money buckets only."""
    plan_id: Mapped[uuid.UUID | None]
    """The plan the bucket was sold under: a copy of its order's (no foreign key of its own
    on PostgreSQL, see migration 20261202_storm)."""
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"))
    valid_from: Mapped[datetime] = mapped_column(default=clock.now)
    valid_until: Mapped[datetime | None]
    priority: Mapped[int] = mapped_column(default=100)
    """Lower is used first (add-ons before the main plan, say)."""
    initial: Mapped[int] = mapped_column(BigInteger, default=0)
    remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    last_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    """The newest journal entry applied to ``remaining``; kept by the database's trigger
    (on SQLite it is how the guard tells the journal's own update from a raw one)."""


class BalanceEntry(Base):
    __tablename__ = "balance_entries"
    __table_args__ = (
        # Only entries of an order are looked up by it (a usage batch writes thousands
        # without one): those alone are indexed (migration 20261203_entry_indexes).
        Index(
            "ix_balance_entries_order_id",
            "order_id",
            sqlite_where=text("order_id IS NOT NULL"),
            postgresql_where=text("order_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    bucket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("buckets.id"), index=True)
    """On PostgreSQL no foreign key: the ledger's trigger refuses an entry that names no
    bucket of its account, and a bucket with entries cannot be deleted (migration
    20261202_charging)."""
    account_id: Mapped[uuid.UUID]
    """The bucket's account: the ledger's trigger refuses any other (so no foreign key of
    its own on PostgreSQL, see migration 20261202_storm). Not indexed: an account's
    entries are found through its buckets (``bucket_id``)."""
    delta: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[EntryReason] = mapped_column(str_enum(EntryReason, 16))
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"))
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
