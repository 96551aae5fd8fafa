"""A line's auto-renew setting (自动续费) and where its renewal schedule stands.

One row per line (UNIQUE ``line_id``). ``period_key`` is the expiry the current attempts
try to renew (ISO UTC, the same value the renewal batch stores in ``renewal_runs``), and
``attempts`` counts the attempts made for that period; both start again when the line's
expiry moves (a renewal by any path). ``next_attempt_at`` is when the scheduler takes the
line next; ``claimed_until`` is the lease of the worker that took it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openmvno.db import Base, IdMixin, TimestampMixin, str_enum


class Funding(enum.StrEnum):
    wallet = "wallet"
    card = "card"


class AutoRenewSetting(IdMixin, TimestampMixin, Base):
    __tablename__ = "auto_renew_settings"
    __table_args__ = (
        Index("ix_auto_renew_settings_due", "enabled", "next_attempt_at", "id"),
        Index("ix_auto_renew_settings_waiting", "waiting_for_wallet", "enabled"),
    )

    line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("lines.id"), unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    funding: Mapped[Funding] = mapped_column(str_enum(Funding, 8), default=Funding.wallet)
    card_id: Mapped[uuid.UUID | None]
    """The saved card (``payments.cards.SavedCard``) charged when ``funding`` is card."""
    wallet_fallback: Mapped[bool] = mapped_column(default=True)
    """A declined card falls back to the wallet."""
    period_key: Mapped[str | None] = mapped_column(String(40))
    next_attempt_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    """Attempts made for ``period_key`` (the card charge's key carries it, see scheduler)."""
    last_attempt_at: Mapped[datetime | None]
    last_failure: Mapped[str] = mapped_column(String(40), default="")
    """Why the last attempt failed (``card_declined``, ``insufficient_funds``, ...)."""
    waiting_for_wallet: Mapped[bool] = mapped_column(default=False)
    """A lapsed line (suspended) waiting for a top-up: taken as soon as its wallet covers
    the plan's price."""
    claimed_until: Mapped[datetime | None]
