"""Network peers and the usage records (CDRs) they send.

**NetworkPeer**: a system that reports usage (the packet gateway's mediation, the SMSC,
the voice switch). It authenticates with an API key of which only the SHA-256 is stored
(shown once at creation); ``scopes`` say what it may do (``usage:write``); a revoked
peer's key stops working at once.

**UsageRecord**: one record as the peer sent it, stored once: the primary key
``(peer_id, record_id)`` makes a replay a ``duplicate``. It keeps what rating decided
(``status``, ``charged_units``, ``wallet_minor``); the balance itself moves through the
ledger, one entry per bucket per batch (``batch_id`` names the batch, and the entry keys
``usage:<batch_id>:<bucket_id>``). Every row carries its ``day`` (operator's time zone)
and the history index leads with ``(line_id, day)``: the table can be partitioned by
day on PostgreSQL (the primary key then becomes ``(peer_id, record_id, day)``, a peer's
record ids being unique per day).

**LineBar**: a line's data service barred at the network because it ran out with
nothing to pay for more (provisioning ``bar_data`` job through the outbox), lifted
(``unbar_data``) when the line is topped up or renewed. ``generation`` counts bars, so
each bar and lift has its own outbox dedupe key.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin


class NetworkPeer(IdMixin, Base):
    __tablename__ = "network_peers"

    name: Mapped[str] = mapped_column(String(60), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 (hex) of the API key; the key itself is shown once and never stored."""
    key_prefix: Mapped[str] = mapped_column(String(12))
    """The key's first characters, to tell keys apart in ``peers list``."""
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    revoked_at: Mapped[datetime | None]


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_line_day", "line_id", "day", "kind"),)

    # The peer's own id is the key (no surrogate: nothing reads one, and each row would
    # pay a sequence value and an index entry for it). No foreign keys: records arrive at
    # carrier rate (a key check per row per reference would be most of the insert),
    # always for lines read under lock in the same transaction; and a partitioned table
    # is easier without them.
    peer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch_id: Mapped[uuid.UUID]
    line_id: Mapped[uuid.UUID]
    account_id: Mapped[uuid.UUID]
    """The owner when the record was charged (the shard key)."""
    kind: Mapped[str] = mapped_column(String(8))
    """``data`` (bytes), ``voice`` (seconds) or ``sms`` (messages)."""
    units: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime]
    day: Mapped[date] = mapped_column(Date)
    """The day of ``started_at`` in the operator's time zone (history, partitioning)."""
    zone: Mapped[str] = mapped_column(String(20))
    rating_group: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    """charged, partial, blocked, line_not_active or out_of_order."""
    charged_units: Mapped[int] = mapped_column(BigInteger, default=0)
    wallet_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Money taken from the wallet for the part beyond the allowances (overage, roaming)."""
    received_at: Mapped[datetime] = mapped_column(default=clock.now)


class LineBar(Base):
    __tablename__ = "line_bars"

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    barred: Mapped[bool] = mapped_column(default=True)
    generation: Mapped[int] = mapped_column(default=1)
    barred_at: Mapped[datetime] = mapped_column(default=clock.now)
    lifted_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
