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

While the card method is switched off on the admin console (``runtime_settings``, read
once per batch in the claim's unit of work) nothing is claimed and no card is charged:
the top-ups wait (a top-up a crash left ``charging`` too) and go ahead when it is on again.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.db import Base, IdMixin, TimestampMixin, str_enum, unit_of_work
from openmvno.errors import InvalidInput
from openmvno.i18n import N_
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings

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


# ---------------------------------------------------------------- settings


MAX_PER_MONTH_LIMIT = 31


@dataclass(frozen=True)
class AutoTopupView:
    """What the subscriber sees of their auto top-up."""

    enabled: bool
    currency: str
    threshold_minor: int
    amount_minor: int
    max_per_month: int
    used_this_month: int
    card_id: uuid.UUID | None
    """The chosen card; ``None``: the default card."""
    card_brand: str | None
    card_last4: str | None
    last_failure_code: str | None


def period_of(now: datetime) -> str:
    """The calendar month ``YYYY-MM`` in the operator's time zone."""
    from openmvno.formatting import to_operator

    return to_operator(now).strftime("%Y-%m")


async def _used(session: AsyncSession, account_id: uuid.UUID, period: str) -> int:
    from sqlalchemy import func

    found = await session.scalar(
        select(func.count()).select_from(AutoTopupRun)
        .where(AutoTopupRun.account_id == account_id, AutoTopupRun.period == period)
    )
    return int(found or 0)


async def view(
    session: AsyncSession, *, account_id: uuid.UUID, currency: str, default_max: int
) -> AutoTopupView:
    """The account's settings (off, with zeros, when never set)."""
    from openmvno.payments import cards

    row = await session.scalar(select(AutoTopup).where(AutoTopup.account_id == account_id))
    used = await _used(session, account_id, period_of(clock.now()))
    if row is None:
        return AutoTopupView(False, currency, 0, 0, default_max, used, None, None, None, None)
    card = None
    if row.card_id is not None:
        card = await session.get(cards.SavedCard, row.card_id)
        if card is not None and card.state != cards.CardState.active:
            card = None
    shown = card or await cards.default_card(session, account_id=account_id)
    return AutoTopupView(
        enabled=row.enabled, currency=row.currency, threshold_minor=row.threshold_minor,
        amount_minor=row.amount_minor, max_per_month=row.max_per_month, used_this_month=used,
        card_id=card.id if card else None,
        card_brand=shown.brand if shown else None, card_last4=shown.last4 if shown else None,
        last_failure_code=row.last_failure_code,
    )


async def set_auto_topup(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str,
    enabled: bool,
    threshold_minor: int,
    amount_minor: int,
    card_id: uuid.UUID | None = None,
    max_per_month: int | None = None,
    default_max: int = 3,
) -> AutoTopupView:
    """Turn auto top-up on or off and set its numbers. Turning it on needs a saved card
    (the chosen one, or a default); the amount must be more than zero and the threshold
    zero or more; at most ``MAX_PER_MONTH_LIMIT`` top-ups a month."""
    from openmvno.payments import cards

    if isinstance(amount_minor, bool) or amount_minor <= 0:
        raise InvalidInput("amount_invalid", N_("The amount must be more than zero."))
    if isinstance(threshold_minor, bool) or threshold_minor < 0:
        raise InvalidInput("threshold_invalid", N_("The threshold cannot be below zero."))
    n = default_max if max_per_month is None else max_per_month
    if not 1 <= n <= MAX_PER_MONTH_LIMIT:
        raise InvalidInput(
            "max_per_month_invalid", N_("Top up at most {n} times a month."),
            n=MAX_PER_MONTH_LIMIT,
        )
    if card_id is not None:
        await cards.get_card(session, account_id=account_id, card_id=card_id)
    elif enabled and await cards.default_card(session, account_id=account_id) is None:
        raise InvalidInput(
            "no_saved_card", N_("Save a card first: auto top-up charges a saved card.")
        )
    row = await session.scalar(
        select(AutoTopup).where(AutoTopup.account_id == account_id).with_for_update()
    )
    if row is None:
        row = AutoTopup(account_id=account_id, currency=currency)
        session.add(row)
    row.enabled = enabled
    row.currency = currency
    row.threshold_minor = threshold_minor
    row.amount_minor = amount_minor
    row.card_id = card_id
    row.max_per_month = n
    if enabled:
        row.next_try_at = None
        row.last_failure_code = None
    await session.flush()
    return await view(session, account_id=account_id, currency=currency, default_max=default_max)


# ---------------------------------------------------------------- the job


@dataclass(frozen=True)
class _Due:
    run_id: uuid.UUID
    key: str
    account_id: uuid.UUID
    amount_minor: int
    currency: str
    card_id: uuid.UUID | None
    setting_id: uuid.UUID


def _insert(session: AsyncSession, table: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def _balance() -> Any:
    from sqlalchemy import func

    from openmvno.ledger.models import Bucket, BucketKind

    return (
        select(func.coalesce(func.sum(Bucket.remaining), 0))
        .where(Bucket.account_id == AutoTopup.account_id, Bucket.kind == BucketKind.money,
               Bucket.currency == AutoTopup.currency)
        .correlate(AutoTopup)
        .scalar_subquery()
    )


def _used_count(period: str) -> Any:
    from sqlalchemy import func

    return (
        select(func.count()).select_from(AutoTopupRun)
        .where(AutoTopupRun.account_id == AutoTopup.account_id, AutoTopupRun.period == period)
        .correlate(AutoTopup)
        .scalar_subquery()
    )


def _open_run() -> Any:
    from sqlalchemy import exists

    return exists().where(
        AutoTopupRun.account_id == AutoTopup.account_id,
        AutoTopupRun.state == TopupState.charging,
    ).correlate(AutoTopup)


def waiting_for_cards(rt: Runtime) -> bool:
    """Auto top-ups wait: payment by card is switched off on the console (as of this
    process's last ``runtime_settings.refresh``)."""
    return not runtime_settings.method_on(rt, "card")


async def _claim(rt: Runtime, now: datetime, period: str) -> list[_Due]:
    """Unit of work 1: claim due settings, write this month's next top-up of each (or
    take up one a crash left ``charging``)."""
    from sqlalchemy import and_, func, or_

    from openmvno.payments import cards
    from openmvno.worker.claims import claim_due

    due = and_(
        AutoTopup.enabled.is_(True),
        or_(AutoTopup.next_try_at.is_(None), AutoTopup.next_try_at <= now),
        or_(
            and_(_balance() < AutoTopup.threshold_minor,
                 _used_count(period) < AutoTopup.max_per_month),
            _open_run(),
        ),
    )
    async with unit_of_work(rt.sessions) as session:
        await runtime_settings.refresh(session, rt)
        if waiting_for_cards(rt):
            return []  # no saved card is charged off-session while cards are switched off
        claimed = await claim_due(
            session, AutoTopup, due, [AutoTopup.updated_at], rt.settings.auto_topup_batch,
            timedelta(minutes=5), now=now,
            columns=[AutoTopup.id, AutoTopup.account_id, AutoTopup.currency,
                     AutoTopup.amount_minor, AutoTopup.card_id, AutoTopup.max_per_month],
        )
        if not claimed:
            return []
        by_account = {r.account_id: r for r in claimed}
        accounts = list(by_account)
        used = dict((await session.execute(
            select(AutoTopupRun.account_id, func.count())
            .where(AutoTopupRun.account_id.in_(accounts), AutoTopupRun.period == period)
            .group_by(AutoTopupRun.account_id)
        )).all())
        open_accounts = set((await session.scalars(
            select(AutoTopupRun.account_id).where(
                AutoTopupRun.account_id.in_(accounts),
                AutoTopupRun.state == TopupState.charging,
            )
        )).all())
        fresh = [
            {
                "id": uuid.uuid4(), "account_id": r.account_id, "period": period,
                "seq": int(used.get(r.account_id, 0)) + 1,
                "key": f"auto-topup:{r.account_id}:{period}:{int(used.get(r.account_id, 0)) + 1}",
                "amount_minor": r.amount_minor, "currency": r.currency,
                "state": TopupState.charging, "attempt_id": None, "decline_code": None,
                "created_at": now, "updated_at": now,
            }
            for r in claimed
            if r.account_id not in open_accounts
            and int(used.get(r.account_id, 0)) < r.max_per_month
        ]
        if fresh:
            # UNIQUE(account, month, seq): two workers racing for one slot write one row.
            await session.execute(
                _insert(session, AutoTopupRun.__table__).values(fresh)
                .on_conflict_do_nothing()
            )
        runs = (await session.execute(
            select(AutoTopupRun.id, AutoTopupRun.key, AutoTopupRun.account_id,
                   AutoTopupRun.amount_minor, AutoTopupRun.currency)
            .where(AutoTopupRun.account_id.in_(accounts),
                   AutoTopupRun.state == TopupState.charging)
        )).all()
        chosen = [r.card_id for r in claimed if r.card_id is not None]
        active = set()
        if chosen:
            active = set((await session.scalars(
                select(cards.SavedCard.id).where(
                    cards.SavedCard.id.in_(chosen),
                    cards.SavedCard.state == cards.CardState.active,
                )
            )).all())
        released = [r.id for r in claimed if r.account_id not in {run.account_id for run in runs}]
        if released:
            await session.execute(
                update(AutoTopup).where(AutoTopup.id.in_(released)).values(claimed_until=None)
            )
        return [
            _Due(
                run_id=run.id, key=run.key, account_id=run.account_id,
                amount_minor=run.amount_minor, currency=run.currency,
                card_id=(by_account[run.account_id].card_id
                         if by_account[run.account_id].card_id in active else None),
                setting_id=by_account[run.account_id].id,
            )
            for run in runs
        ]


async def _settle(rt: Runtime, due: Sequence[_Due], results: Sequence[Any], now: datetime) -> None:
    """Unit of work 3: credit the wallets, settle the top-ups, notify, release."""
    from openmvno.ledger import service as ledger
    from openmvno.ledger.models import Bucket, BucketKind, EntryReason
    from openmvno.notifications.notices import NoticeRequest, notify_many

    succeeded = [(d, r) for d, r in zip(due, results, strict=True) if r.status == "succeeded"]
    declined = [(d, r) for d, r in zip(due, results, strict=True) if r.status == "declined"]
    pending = [(d, r) for d, r in zip(due, results, strict=True) if r.status == "pending"]
    async with unit_of_work(rt.sessions) as session:
        wallets: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
        if succeeded:
            accounts = sorted({d.account_id for d, _ in succeeded})
            for bucket_id, account_id, currency in (await session.execute(
                select(Bucket.id, Bucket.account_id, Bucket.currency).where(
                    Bucket.account_id.in_(accounts), Bucket.kind == BucketKind.money
                )
            )).all():
                wallets[(account_id, str(currency))] = bucket_id
            for d, _ in succeeded:
                if (d.account_id, d.currency) not in wallets:
                    w = await ledger.wallet(session, account_id=d.account_id, currency=d.currency)
                    wallets[(d.account_id, d.currency)] = w.id
            await ledger.post_many(session, [
                ledger.Posting(
                    bucket_id=wallets[(d.account_id, d.currency)], account_id=d.account_id,
                    delta=d.amount_minor, reason=EntryReason.topup, key=d.key,
                    memo="auto top-up",
                )
                for d, _ in succeeded
            ])
        table = AutoTopupRun.__table__
        assert isinstance(table, Table)
        settled = [(d, r) for d, r in (*succeeded, *declined)]
        if settled:
            conn = await session.connection()
            await conn.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.state == TopupState.charging.value)
                .values(state=bindparam("b_state"), attempt_id=bindparam("b_attempt"),
                        decline_code=bindparam("b_code"), updated_at=now),
                [
                    {"b_id": d.run_id, "b_state": (TopupState.succeeded if r.status == "succeeded"
                                                   else TopupState.declined).value,
                     "b_attempt": r.attempt_id, "b_code": r.decline_code}
                    for d, r in settled
                ],
            )
        retry = now + timedelta(hours=rt.settings.auto_topup_retry_hours)
        ids = [d.setting_id for d in due]
        await session.execute(
            update(AutoTopup).where(AutoTopup.id.in_(ids))
            .values(claimed_until=None).execution_options(synchronize_session=False)
        )
        for d, r in declined:
            await session.execute(
                update(AutoTopup).where(AutoTopup.id == d.setting_id)
                .values(next_try_at=retry, last_failure_code=(r.decline_code or "declined")[:40])
            )
        if pending:
            await session.execute(
                update(AutoTopup).where(AutoTopup.id.in_([d.setting_id for d, _ in pending]))
                .values(next_try_at=now + timedelta(minutes=5))
            )
        if succeeded:
            await session.execute(
                update(AutoTopup).where(AutoTopup.id.in_([d.setting_id for d, _ in succeeded]))
                .values(last_failure_code=None)
            )
            balances = dict((await session.execute(
                select(Bucket.id, Bucket.remaining).where(
                    Bucket.id.in_([wallets[(d.account_id, d.currency)] for d, _ in succeeded])
                ).execution_options(populate_existing=True)
            )).all())
            await notify_many(session, [
                NoticeRequest(
                    account_id=d.account_id, event="auto_topup_done",
                    key=f"auto_topup_done:{d.account_id}:{d.key}",
                    params={"amount_minor": d.amount_minor, "currency": d.currency,
                            "balance_minor": int(balances[wallets[(d.account_id, d.currency)]])},
                )
                for d, _ in succeeded
            ])


async def run_due(rt: Runtime) -> int:
    """One batch of auto top-ups (contract 2); returns how many accounts were handled."""
    from openmvno.payments.cards import CardCharge, charge_cards

    now = clock.now()
    due = await _claim(rt, now, period_of(now))
    if not due:
        return 0
    results = await charge_cards(rt, [
        CardCharge(account_id=d.account_id, amount_minor=d.amount_minor, currency=d.currency,
                   idempotency_key=d.key, description="Wallet auto top-up", card_id=d.card_id)
        for d in due
    ])
    await _settle(rt, due, results, clock.now())
    log.info("auto top-ups", extra={"count": len(due)})
    return len(due)
