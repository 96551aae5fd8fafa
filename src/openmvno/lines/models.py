"""Lines (eSIM, SIM, data card): inventory, ownership, entitlement state."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, TimestampMixin, str_enum


class LineKind(enum.StrEnum):
    esim = "esim"
    sim = "sim"
    datacard = "datacard"


class LineState(enum.StrEnum):
    inventory = "inventory"
    active = "active"
    grace = "grace"
    suspended = "suspended"
    terminated = "terminated"


class Line(IdMixin, TimestampMixin, Base):
    __tablename__ = "lines"
    __table_args__ = (
        Index("ix_lines_state_expires", "state", "expires_at", "id"),
        Index("ix_lines_inventory_pick", "kind", "state", "account_id"),
    )

    kind: Mapped[LineKind] = mapped_column(str_enum(LineKind, 16))
    iccid: Mapped[str] = mapped_column(String(22), unique=True)
    msisdn: Mapped[str] = mapped_column(String(20), unique=True)
    device_serial: Mapped[str | None] = mapped_column(String(40), unique=True)
    bind_secret_hash: Mapped[str | None] = mapped_column(String(64))
    esim_matching_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    state: Mapped[LineState] = mapped_column(str_enum(LineState, 16), default=LineState.inventory)
    plan_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("plans.id"))
    expires_at: Mapped[datetime | None]
    auto_renew: Mapped[bool] = mapped_column(default=False)
    activated_at: Mapped[datetime | None]
    state_changed_at: Mapped[datetime] = mapped_column(default=clock.now)
    bound_at: Mapped[datetime | None]


class LineEvent(IdMixin, Base):
    """One entry per state change or binding, for support and audit."""

    __tablename__ = "line_events"

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), index=True)
    account_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(default=clock.now)


class BindAttempt(IdMixin, Base):
    """A failed device-binding attempt; counted to stop serial/secret guessing."""

    __tablename__ = "bind_attempts"
    __table_args__ = (Index("ix_bind_attempts_account_at", "account_id", "at"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    serial: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(default=clock.now)


class NumberState(enum.StrEnum):
    quarantined = "quarantined"
    available = "available"


class NumberQuarantine(IdMixin, Base):
    """A number released by a terminated line (see :mod:`openmvno.lines.lifecycle`): held
    back until ``available_at`` (nobody gets a just-closed number and its calls), then
    ``available``: the old line is kept for history under a placeholder number and the
    MSISDN may be imported again on new stock (``openmvno import lines``)."""

    __tablename__ = "number_quarantine"
    __table_args__ = (Index("ix_number_quarantine_due", "state", "available_at", "id"),)

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), unique=True)
    msisdn: Mapped[str] = mapped_column(String(20), index=True)
    kind: Mapped[LineKind] = mapped_column(str_enum(LineKind, 16))
    state: Mapped[NumberState] = mapped_column(
        str_enum(NumberState, 16), default=NumberState.quarantined
    )
    terminated_at: Mapped[datetime] = mapped_column(default=clock.now)
    available_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
