"""Saved payment cards: save through the provider's hosted page, list, remove, choose the
default, and charge them off-session in batches (renewals, auto top-up).

What we keep of a card is what a receipt may show: the provider, its references (the
customer and the reusable card token), brand, last four digits and expiry. Never a card
number: the number only ever reaches the provider's own page.

Saving: :func:`start_setup` makes the provider's customer for the account once
(``payment_customers``), records a setup and asks the provider for its hosted page
(three short units of work, the provider called with none open); the payer comes back
to ``/account/cards/setup/{id}`` and :func:`finish_setup` asks the provider how it went
and records the card (the first card is the default). Listing finishes any setup still
open too, so an app that never follows the return link sees its card.

Removing a card marks it removed at once and queues a ``card_detach`` outbox job: the
worker forgets the card at the provider, never inside a transaction.

Charging (:func:`charge_cards`, contract 4): the attempts are recorded in one unit of
work (``payment_attempts`` rows, one statement per batch, UNIQUE ``idempotency_key`` =
the caller's key, so a retry never makes a second attempt); the provider is asked with no
transaction open (``charge_saved``, the attempt's id as the provider's idempotency key,
so a retry after a crash never charges twice); the answers are recorded in one unit of
work. An attempt already settled is answered from the database without asking again.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from openmvno import clock
from openmvno.adapters.payments import (
    CardSetupResult,
    PaymentProvider,
    SavedCharge,
    SavedChargeResult,
)
from openmvno.db import Base, IdMixin, TimestampMixin, UTCDateTime, str_enum, unit_of_work
from openmvno.errors import DomainError, NotFound
from openmvno.i18n import N_
from openmvno.ids import new_id
from openmvno.notifications import service as outbox
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.payments.cards")
_CHUNK = 500
"""Rows per multi-row statement (far below both backends' parameter limits)."""


# ---------------------------------------------------------------- models


class CardState(enum.StrEnum):
    active = "active"
    removed = "removed"


class SetupState(enum.StrEnum):
    open = "open"
    succeeded = "succeeded"
    failed = "failed"


class PaymentCustomer(IdMixin, TimestampMixin, Base):
    """The provider's customer record of one account, created once
    (UNIQUE(account_id, provider))."""

    __tablename__ = "payment_customers"
    __table_args__ = (UniqueConstraint("account_id", "provider"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    provider: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str] = mapped_column(String(120))


class SavedCard(IdMixin, TimestampMixin, Base):
    """A card saved at the provider: references and what a receipt may show, never the
    number. At most one active default per account (a partial UNIQUE index)."""

    __tablename__ = "saved_cards"
    __table_args__ = (
        UniqueConstraint("provider", "card_ref"),
        Index(
            "uq_saved_cards_default", "account_id", unique=True,
            sqlite_where=text("is_default AND state = 'active'"),
            postgresql_where=text("is_default AND state = 'active'"),
        ),
        Index("ix_saved_cards_expiry", "exp_year", "exp_month"),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str] = mapped_column(String(120))
    card_ref: Mapped[str] = mapped_column(String(120))
    """The provider's reusable token (sandbox ``sbcard_…``, Stripe ``pm_…``)."""
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    state: Mapped[CardState] = mapped_column(str_enum(CardState, 20), default=CardState.active)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    removed_at: Mapped[datetime | None]


class CardSetupSession(IdMixin, TimestampMixin, Base):
    """One "save a card" visit to the provider's hosted page."""

    __tablename__ = "card_setups"
    __table_args__ = (UniqueConstraint("provider", "reference"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    customer_ref: Mapped[str] = mapped_column(String(120))
    reference: Mapped[str | None] = mapped_column(String(120))
    state: Mapped[SetupState] = mapped_column(str_enum(SetupState, 20), default=SetupState.open)
    next_action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failure_code: Mapped[str | None] = mapped_column(String(40))
    card_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("saved_cards.id"))


# ---------------------------------------------------------------- errors


class CardNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("card_not_found", N_("There is no such saved card."))


class SetupNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("card_setup_not_found", N_("There is no such card setup."))


class CardProviderUnavailable(DomainError):
    """The provider did not answer while saving a card: 503, nothing saved."""

    status = 503


def _unavailable() -> CardProviderUnavailable:
    return CardProviderUnavailable(
        "provider_unavailable",
        N_("The payment service is not answering; nothing was saved. Try again later."),
    )


SETUP_FAILURES: dict[str, str] = {
    "declined": N_("The bank declined this card; it was not saved."),
    "expired": N_("This card has expired; it was not saved."),
    "authentication_failed": N_("The card could not be verified; it was not saved."),
}


def setup_failure_reason(code: str | None) -> str:
    """The message id explaining why a card was not saved."""
    return SETUP_FAILURES.get(code or "", N_("This card could not be saved."))


# ---------------------------------------------------------------- helpers


def _provider(rt: Runtime) -> PaymentProvider:
    from openmvno.adapters.payments.registry import payment_provider

    return payment_provider(rt.settings, rt)


def _insert(session: AsyncSession, table: Any) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def return_url(rt: Runtime, setup_id: uuid.UUID) -> str:
    """Where the provider's page sends the payer back."""
    return f"{rt.settings.public_url.rstrip('/')}/account/cards/setup/{setup_id}"


async def _customer_ref(rt: Runtime, account_id: uuid.UUID, provider: PaymentProvider) -> str:
    """The account's customer at the provider, created once (race-safe: the provider is
    idempotent per account, and the first row written wins)."""
    async with unit_of_work(rt.sessions) as session:
        found = await session.scalar(
            select(PaymentCustomer.customer_ref).where(
                PaymentCustomer.account_id == account_id,
                PaymentCustomer.provider == provider.name,
            )
        )
    if found is not None:
        return found
    try:
        ref = await provider.create_customer(account_id=str(account_id))
    except Exception as exc:
        log.exception("customer not created", extra={"account": str(account_id)})
        raise _unavailable() from exc
    now = clock.now()
    async with unit_of_work(rt.sessions) as session:
        await session.execute(
            _insert(session, PaymentCustomer.__table__)
            .values(id=uuid.uuid4(), account_id=account_id, provider=provider.name,
                    customer_ref=ref, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["account_id", "provider"])
        )
        stored = await session.scalar(
            select(PaymentCustomer.customer_ref).where(
                PaymentCustomer.account_id == account_id,
                PaymentCustomer.provider == provider.name,
            )
        )
    assert stored is not None
    return stored


# ---------------------------------------------------------------- saving


async def start_setup(rt: Runtime, *, account_id: uuid.UUID) -> CardSetupSession:
    """Start saving a card: returns the setup, whose ``next_action`` says where the payer
    goes (``{"type": "redirect", "url": …}`` for a hosted page). No transaction is held
    while the provider is asked."""
    provider = _provider(rt)
    customer = await _customer_ref(rt, account_id, provider)
    async with unit_of_work(rt.sessions) as session:
        setup = CardSetupSession(
            account_id=account_id, provider=provider.name, customer_ref=customer,
            state=SetupState.open, next_action={},
        )
        session.add(setup)
        await session.flush()
        setup_id = setup.id
    try:
        started = await provider.start_card_setup(
            setup_id=str(setup_id), customer_ref=customer, return_url=return_url(rt, setup_id)
        )
    except Exception as exc:
        log.exception("card setup not started", extra={"setup": str(setup_id)})
        async with unit_of_work(rt.sessions) as session:
            await session.execute(
                update(CardSetupSession).where(CardSetupSession.id == setup_id)
                .values(state=SetupState.failed, failure_code="provider_unavailable",
                        updated_at=clock.now())
            )
        raise _unavailable() from exc
    async with unit_of_work(rt.sessions) as session:
        row = await session.get(CardSetupSession, setup_id, with_for_update=True)
        assert row is not None
        row.reference = started.reference
        row.next_action = dict(started.next_action)
        await session.flush()
        return row


async def _owned_setup(
    session: AsyncSession, setup_id: uuid.UUID, account_id: uuid.UUID
) -> CardSetupSession:
    row = await session.get(CardSetupSession, setup_id, populate_existing=True)
    if row is None or row.account_id != account_id:
        raise SetupNotFound()
    return row


async def finish_setup(
    rt: Runtime, *, setup_id: uuid.UUID, account_id: uuid.UUID
) -> CardSetupSession:
    """Ask the provider how the setup went and record it (idempotent): a saved card
    becomes a :class:`SavedCard` (the account's first is its default); a refused one
    fails the setup with the provider's code."""
    async with unit_of_work(rt.sessions) as session:
        row = await _owned_setup(session, setup_id, account_id)
        if row.state != SetupState.open or row.reference is None:
            return row
        reference, provider_name = row.reference, row.provider
    provider = _provider(rt)
    if provider.name != provider_name:
        async with unit_of_work(rt.sessions) as session:
            return await _owned_setup(session, setup_id, account_id)
    try:
        result = await provider.retrieve_card_setup(reference)
    except Exception:  # noqa: BLE001 - shown as still open; asked again on the next visit
        log.warning("card setup status unavailable", extra={"setup": str(setup_id)})
        async with unit_of_work(rt.sessions) as session:
            return await _owned_setup(session, setup_id, account_id)
    async with unit_of_work(rt.sessions) as session:
        return await _record_setup(session, setup_id, result)


async def _record_setup(
    session: AsyncSession, setup_id: uuid.UUID, result: CardSetupResult
) -> CardSetupSession:
    row = await session.get(
        CardSetupSession, setup_id, with_for_update=True, populate_existing=True
    )
    assert row is not None
    if row.state != SetupState.open or result.status == "requires_action":
        return row
    if result.status == "failed" or result.card is None:
        row.state = SetupState.failed
        row.failure_code = (result.failure_code or "declined")[:40]
        await session.flush()
        return row
    card = result.card
    now = clock.now()
    has_default = await session.scalar(
        select(SavedCard.id).where(
            SavedCard.account_id == row.account_id, SavedCard.state == CardState.active,
            SavedCard.is_default.is_(True),
        )
    )
    await session.execute(
        _insert(session, SavedCard.__table__)
        .values(
            id=uuid.uuid4(), account_id=row.account_id, provider=row.provider,
            customer_ref=card.customer_ref[:120], card_ref=card.card_ref[:120],
            brand=card.brand[:20], last4=card.last4[-4:], exp_month=card.exp_month,
            exp_year=card.exp_year, state=CardState.active, is_default=has_default is None,
            removed_at=None, created_at=now, updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "card_ref"])
    )
    saved = await session.scalar(
        select(SavedCard).where(SavedCard.provider == row.provider,
                                SavedCard.card_ref == card.card_ref[:120])
    )
    assert saved is not None
    row.state = SetupState.succeeded
    row.card_id = saved.id
    await session.flush()
    return row


async def finish_open_setups(
    rt: Runtime, *, account_id: uuid.UUID, reader: AsyncSession | None = None
) -> int:
    """Finish the account's setups still open from the last day (an app that never
    followed the return link); returns how many were asked about. ``reader``: the
    request's own read-only session, if it has one (a second reader connection held by
    the same request could wait for the pool forever under load)."""
    since = clock.now() - timedelta(days=1)
    open_ones = (
        select(CardSetupSession.id).where(
            CardSetupSession.account_id == account_id,
            CardSetupSession.state == SetupState.open,
            CardSetupSession.reference.is_not(None),
            CardSetupSession.created_at >= since,
        ).limit(5)
    )
    if reader is not None:
        ids = list((await reader.scalars(open_ones)).all())
    else:
        # A read-only connection: a page view takes no write lock unless a setup is open.
        async with unit_of_work(rt.sessions, readonly=True) as session:
            ids = list((await session.scalars(open_ones)).all())
    for setup_id in ids:
        await finish_setup(rt, setup_id=setup_id, account_id=account_id)
    return len(ids)


# ---------------------------------------------------------------- listing and changing


async def list_cards(session: AsyncSession, *, account_id: uuid.UUID) -> list[SavedCard]:
    """The account's active cards, the default first, then the newest."""
    rows = await session.scalars(
        select(SavedCard)
        .where(SavedCard.account_id == account_id, SavedCard.state == CardState.active)
        .order_by(SavedCard.is_default.desc(), SavedCard.created_at.desc())
    )
    return list(rows.all())


async def get_card(
    session: AsyncSession, *, account_id: uuid.UUID, card_id: uuid.UUID, lock: bool = False
) -> SavedCard:
    """One of the account's active cards, or :class:`CardNotFound` (also for another
    account's card: no one learns that it exists)."""
    stmt = select(SavedCard).where(
        SavedCard.id == card_id, SavedCard.account_id == account_id,
        SavedCard.state == CardState.active,
    ).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    card = await session.scalar(stmt)
    if card is None:
        raise CardNotFound()
    return card


async def default_card(session: AsyncSession, *, account_id: uuid.UUID) -> SavedCard | None:
    return await session.scalar(
        select(SavedCard).where(
            SavedCard.account_id == account_id, SavedCard.state == CardState.active,
            SavedCard.is_default.is_(True),
        )
    )


async def set_default(
    session: AsyncSession, *, account_id: uuid.UUID, card_id: uuid.UUID
) -> SavedCard:
    """Make one card the default (the others stop being it)."""
    card = await get_card(session, account_id=account_id, card_id=card_id, lock=True)
    if card.is_default:
        return card
    now = clock.now()
    await session.execute(
        update(SavedCard)
        .where(SavedCard.account_id == account_id, SavedCard.is_default.is_(True))
        .values(is_default=False, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(SavedCard).where(SavedCard.id == card.id)
        .values(is_default=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(card)
    return card


async def remove_card(
    session: AsyncSession, *, account_id: uuid.UUID, card_id: uuid.UUID
) -> SavedCard:
    """Remove a card now (it is never charged again) and forget it at the provider
    through the outbox; a default card's place goes to the newest other card. Removing
    a card already removed changes nothing (a retried DELETE)."""
    gone = await session.scalar(
        select(SavedCard).where(SavedCard.id == card_id, SavedCard.account_id == account_id,
                                SavedCard.state == CardState.removed)
    )
    if gone is not None:
        return gone
    card = await get_card(session, account_id=account_id, card_id=card_id, lock=True)
    was_default = card.is_default
    card.state = CardState.removed
    card.is_default = False
    card.removed_at = clock.now()
    await session.flush()
    await outbox.enqueue(
        session, kind=OutboxKind.card_detach, dedupe_key=f"card-detach:{card.id}",
        recipient=card.provider, account_id=account_id, payload={"card_id": str(card.id)},
    )
    if was_default:
        newest = await session.scalar(
            select(SavedCard).where(
                SavedCard.account_id == account_id, SavedCard.state == CardState.active
            ).order_by(SavedCard.created_at.desc(), SavedCard.id.desc()).limit(1)
        )
        if newest is not None:
            newest.is_default = True
            await session.flush()
    return card


async def detach_at_provider(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for :attr:`OutboxKind.card_detach` (no transaction held across the
    provider call; a card already gone at the provider is fine)."""
    card_id = uuid.UUID(str(message.payload["card_id"]))
    async with unit_of_work(rt.sessions) as session:
        card = await session.get(SavedCard, card_id)
        if card is None or card.state != CardState.removed:
            return "ignored: card not removed"
        provider_name, card_ref = card.provider, card.card_ref
    provider = _provider(rt)
    if provider.name != provider_name:
        return f"ignored: card of provider {provider_name}"
    await provider.detach_card(card_ref)
    return "detached"


def card_view(card: SavedCard) -> dict[str, Any]:
    """What the API shows of a card."""
    return {
        "id": card.id,
        "brand": card.brand,
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
        "is_default": card.is_default,
        "provider": card.provider,
        "created_at": card.created_at,
    }


def expires_soon(card: SavedCard, now: datetime | None = None) -> bool:
    """The card's last valid month is this month or next."""
    now = now or clock.now()
    this = now.year * 12 + now.month
    return card.exp_year * 12 + card.exp_month <= this + 1


# ---------------------------------------------------------------- card_expiring notices


EXPIRING_EVERY = timedelta(hours=1)


async def notify_expiring(rt: Runtime) -> int:
    """Worker job: queue ``card_expiring`` for every active card whose last month is this
    month or next (once per card and expiry: the notice's UNIQUE key), at most once an
    hour per process; returns how many notices were new."""
    from openmvno.formatting import to_operator
    from openmvno.notifications.notices import NoticeRequest, notify_many

    now = clock.now()
    last = rt.extras.get("cards_expiring_ran_at")
    if last is not None and now - last < EXPIRING_EVERY:
        return 0
    rt.extras["cards_expiring_ran_at"] = now
    local = to_operator(now)
    this = local.year * 12 + local.month - 1
    months = [(this // 12, this % 12 + 1), ((this + 1) // 12, (this + 1) % 12 + 1)]
    from sqlalchemy import and_

    async with unit_of_work(rt.sessions) as session:
        rows = (await session.execute(
            select(SavedCard.id, SavedCard.account_id, SavedCard.brand, SavedCard.last4,
                   SavedCard.exp_month, SavedCard.exp_year)
            .where(SavedCard.state == CardState.active,
                   or_(*(and_(SavedCard.exp_year == y, SavedCard.exp_month == m)
                         for y, m in months)))
        )).all()
        if not rows:
            return 0
        return await notify_many(session, [
            NoticeRequest(
                account_id=r.account_id, event="card_expiring",
                key=f"card_expiring:{r.account_id}:{r.id}:{r.exp_year}-{r.exp_month:02d}",
                params={"brand": BRAND_NAMES.get(r.brand, r.brand), "last4": r.last4,
                        "exp_month": r.exp_month, "exp_year": r.exp_year},
            )
            for r in rows
        ])


BRAND_NAMES = {"visa": "Visa", "mastercard": "Mastercard", "unionpay": "UnionPay",
               "amex": "American Express", "card": "Card"}


# ---------------------------------------------------------------- charging


ChargeStatus = Literal["succeeded", "declined", "pending"]


@dataclass(frozen=True)
class CardCharge:
    """One off-session charge asked of :func:`charge_cards`."""

    account_id: uuid.UUID
    amount_minor: int
    currency: str
    idempotency_key: str
    """The caller's key (≤ 120 characters), e.g. ``renewal:{line}:{period}:{n}``: one
    attempt per key, ever; asked again, the recorded answer. Any object with these
    attributes will do (``card_id`` and ``description`` optional)."""
    description: str = ""
    card_id: uuid.UUID | None = None
    """``None``: the account's default card."""


@dataclass(frozen=True)
class CardChargeResult:
    """The outcome of one :class:`CardCharge` (same order as asked).

    ``declined`` with ``decline_code`` (``no_saved_card``, ``insufficient_funds``,
    ``expired``, ``card_removed``, ``declined``, ``authentication_required`` …);
    ``pending``: no answer yet (``provider_unavailable`` when the provider did not
    answer): ask again later with the same key."""

    key: str
    status: ChargeStatus
    attempt_id: uuid.UUID | None
    card_id: uuid.UUID | None
    reference: str | None = None
    decline_code: str | None = None
    amount_minor: int = 0
    currency: str = ""

    @property
    def payment_attempt_id(self) -> uuid.UUID | None:
        """The same as ``attempt_id`` (the ``payment_attempts`` row)."""
        return self.attempt_id


_OPEN = (AttemptState.created, AttemptState.requires_action)


def _from_attempt(a: Any) -> CardChargeResult:
    state = AttemptState(a.state)
    status: ChargeStatus = (
        "succeeded" if state == AttemptState.succeeded
        else "declined" if state == AttemptState.failed else "pending"
    )
    return CardChargeResult(
        key=a.idempotency_key, status=status, attempt_id=a.id, card_id=a.saved_card_id,
        reference=a.provider_ref, decline_code=a.failure_code if status != "succeeded" else None,
        amount_minor=a.amount_minor, currency=a.currency,
    )


_ATTEMPT_COLUMNS = (
    PaymentAttempt.id, PaymentAttempt.idempotency_key, PaymentAttempt.state,
    PaymentAttempt.provider, PaymentAttempt.provider_ref, PaymentAttempt.failure_code,
    PaymentAttempt.saved_card_id, PaymentAttempt.amount_minor, PaymentAttempt.currency,
    PaymentAttempt.account_id,
)


async def _attempts_by_key(session: AsyncSession, keys: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for start in range(0, len(keys), _CHUNK):
        rows = await session.execute(
            select(*_ATTEMPT_COLUMNS).where(
                PaymentAttempt.idempotency_key.in_(keys[start : start + _CHUNK])
            )
        )
        for row in rows:
            found[row.idempotency_key] = row
    return found


def _uuid_param(value: uuid.UUID, pg: bool) -> str:
    """A UUID as each database stores it (PostgreSQL ``uuid``; SQLite ``CHAR(32)`` hex)."""
    return str(value) if pg else value.hex


_ATTEMPTS_TARGET = (
    "INSERT INTO payment_attempts (id, order_id, account_id, provider, idempotency_key, "
    "saved_card_id, method, provider_ref, amount_minor, currency, state, failure_code, "
    "next_action, settled_at, created_at, updated_at) "
)
_ATTEMPTS_PG = _ATTEMPTS_TARGET + (
    "SELECT v.i, NULL, v.a, :provider, v.k, v.c, 'card', NULL, v.m, v.cur, "
    "CASE WHEN v.c IS NULL THEN 'failed' ELSE 'created' END, v.f, CAST('{}' AS json), "
    "CASE WHEN v.c IS NULL THEN :now END, :now, :now "
    "FROM jsonb_to_recordset(CAST(:data AS jsonb)) "
    "AS v(i uuid, a uuid, k text, c uuid, m bigint, cur text, f text) "
    "ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = excluded.idempotency_key"
)
_ATTEMPTS_SQLITE = _ATTEMPTS_TARGET + (
    "SELECT json_extract(value, '$.i'), NULL, json_extract(value, '$.a'), :provider, "
    "json_extract(value, '$.k'), json_extract(value, '$.c'), 'card', NULL, "
    "json_extract(value, '$.m'), json_extract(value, '$.cur'), "
    "CASE WHEN json_extract(value, '$.c') IS NULL THEN 'failed' ELSE 'created' END, "
    "json_extract(value, '$.f'), '{}', "
    "CASE WHEN json_extract(value, '$.c') IS NULL THEN :now END, :now, :now "
    "FROM json_each(:data) WHERE true "
    "ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = excluded.idempotency_key"
)
_RETURNING = (
    " RETURNING id, idempotency_key, state, provider, provider_ref, failure_code, "
    "saved_card_id, amount_minor, currency, account_id"
)
# Constant SQL only (no value is ever formatted in: everything travels as parameters).
_ANSWERS_PG = (
    "UPDATE payment_attempts AS p SET state = v.s, provider_ref = v.r, failure_code = v.f, "  # noqa: S608
    "settled_at = CASE WHEN v.s = 'requires_action' THEN NULL ELSE :now END, updated_at = :now "
    "FROM jsonb_to_recordset(CAST(:data AS jsonb)) AS v(i uuid, s text, r text, f text) "
    "WHERE p.id = v.i AND p.state IN ('created', 'requires_action')"
    + _RETURNING.replace(" RETURNING ", " RETURNING p.").replace(", ", ", p.")
)
_ANSWERS_SQLITE = (
    "UPDATE payment_attempts SET state = v.s, provider_ref = v.r, failure_code = v.f, "  # noqa: S608
    "settled_at = CASE WHEN v.s = 'requires_action' THEN NULL ELSE :now END, updated_at = :now "
    "FROM (SELECT json_extract(value, '$.i') AS i, json_extract(value, '$.s') AS s, "
    "json_extract(value, '$.r') AS r, json_extract(value, '$.f') AS f FROM json_each(:data)) "
    "AS v WHERE payment_attempts.id = v.i "
    "AND payment_attempts.state IN ('created', 'requires_action')" + _RETURNING
)


def _typed(sql: str) -> Any:
    """A statement returning attempts, its ids read back as UUIDs on both databases."""
    from sqlalchemy import Uuid

    return (
        text(sql)
        .bindparams(bindparam("now", type_=UTCDateTime()))
        .columns(id=Uuid(), saved_card_id=Uuid(), account_id=Uuid())
    )


def _attempts_insert(pg: bool) -> Any:
    """The batch's attempts in one statement, whatever its size (one JSON parameter),
    returning every key's attempt: a key already recorded is left as it is (UNIQUE
    ``idempotency_key``; the no-op update only makes it come back)."""
    return _typed((_ATTEMPTS_PG if pg else _ATTEMPTS_SQLITE) + _RETURNING)


async def _record_attempts(
    rt: Runtime, provider_name: str, charges: Sequence[Any]
) -> tuple[dict[str, Any], dict[uuid.UUID, SavedCard]]:
    """Unit of work 1: resolve the cards and insert one attempt per new key."""
    async with unit_of_work(rt.sessions) as session:
        accounts = sorted({c.account_id for c in charges})
        cards: dict[uuid.UUID, SavedCard] = {}
        defaults: dict[uuid.UUID, SavedCard] = {}
        for start in range(0, len(accounts), _CHUNK):
            rows = await session.scalars(
                select(SavedCard).where(
                    SavedCard.account_id.in_(accounts[start : start + _CHUNK]),
                    SavedCard.state == CardState.active,
                )
            )
            for found in rows:
                cards[found.id] = found
                if found.is_default:
                    defaults[found.account_id] = found
        now = clock.now()
        pg = session.get_bind().dialect.name == "postgresql"
        batch: list[dict[str, Any]] = []
        keys: set[str] = set()
        for c in charges:
            if c.idempotency_key in keys:
                continue  # one attempt per key (asked twice in one batch: one answer)
            keys.add(c.idempotency_key)
            card_id = getattr(c, "card_id", None)
            card: SavedCard | None = (
                cards.get(card_id) if card_id else defaults.get(c.account_id)
            )
            if card is not None and card.account_id != c.account_id:
                card = None
            batch.append({
                "i": _uuid_param(new_id(), pg), "a": _uuid_param(c.account_id, pg),
                "k": c.idempotency_key, "c": _uuid_param(card.id, pg) if card else None,
                "m": int(c.amount_minor), "cur": c.currency.upper()[:3],
                "f": None if card else ("card_removed" if card_id else "no_saved_card"),
            })
        await session.flush()
        returned = await session.execute(
            _attempts_insert(pg),
            {"data": json.dumps(batch), "now": now, "provider": provider_name},
        )
        attempts = {row.idempotency_key: row for row in returned}
        used = {a.saved_card_id for a in attempts.values() if a.saved_card_id}
        missing = [i for i in used if i not in cards]
        if missing:
            for extra in await session.scalars(
                select(SavedCard).where(SavedCard.id.in_(missing))
            ):
                cards[extra.id] = extra
        session.expunge_all()
    return attempts, cards


async def _record_answers(
    rt: Runtime, answers: Sequence[tuple[uuid.UUID, SavedChargeResult]]
) -> dict[str, Any]:
    """Unit of work 3: every answer in one statement (an attempt settled meanwhile stays
    as it is); returns the attempts it changed, by key."""
    if not answers:
        return {}
    def state(r: SavedChargeResult) -> str:
        if r.status == "succeeded":
            return AttemptState.succeeded.value
        return AttemptState.failed.value if r.status == "declined" else "requires_action"

    async with unit_of_work(rt.sessions) as session:
        pg = session.get_bind().dialect.name == "postgresql"
        data = [
            {"i": _uuid_param(attempt_id, pg), "s": state(r),
             "r": r.reference[:120] if r.reference else None,
             "f": (r.decline_code or "declined")[:40] if r.status == "declined" else None}
            for attempt_id, r in answers
        ]
        returned = await session.execute(
            _typed(_ANSWERS_PG if pg else _ANSWERS_SQLITE),
            {"data": json.dumps(data), "now": clock.now()},
        )
        return {row.idempotency_key: row for row in returned}


async def _ask_pending(
    provider: PaymentProvider, pending: Sequence[tuple[Any, str]]
) -> list[tuple[uuid.UUID, SavedChargeResult]]:
    """Attempts the provider left without an outcome: ask for their status."""
    found: list[tuple[uuid.UUID, SavedChargeResult]] = []
    for attempt, reference in pending:
        try:
            payment = await provider.retrieve(reference)
        except Exception:  # noqa: BLE001 - still pending; asked again on the next retry
            log.warning("saved charge status unavailable", extra={"attempt": str(attempt.id)})
            continue
        if payment.status == "succeeded":
            found.append((attempt.id, SavedChargeResult(
                attempt.idempotency_key, "succeeded", reference)))
        elif payment.status == "failed":
            found.append((attempt.id, SavedChargeResult(
                attempt.idempotency_key, "declined", reference,
                payment.failure_code or "declined")))
    return found


async def charge_cards(rt: Runtime, charges: Sequence[Any]) -> list[CardChargeResult]:
    """Charge saved cards off-session (contract 4), set-based: attempts recorded in one
    unit of work, the provider asked with no transaction open, the answers recorded in
    one unit of work. Idempotent per ``key``: a key already settled is answered from the
    database, one left open by a crash is asked again with the same provider idempotency
    key (the attempt's id), so nothing is ever charged twice. Results in input order."""
    if not charges:
        return []
    for c in charges:
        if not 0 < len(c.idempotency_key) <= 120:
            raise ValueError("a charge key is 1 to 120 characters")
        if isinstance(c.amount_minor, bool) or c.amount_minor <= 0:
            raise ValueError("amount_minor must be a positive integer")
    provider = _provider(rt)
    attempts, cards = await _record_attempts(rt, provider.name, charges)
    to_charge: list[tuple[Any, SavedCharge]] = []
    pending: list[tuple[Any, str]] = []
    seen: set[str] = set()
    for c in charges:
        a = attempts[c.idempotency_key]
        if (c.idempotency_key in seen or AttemptState(a.state) not in _OPEN
                or a.provider != provider.name):
            continue
        seen.add(c.idempotency_key)
        if a.state == AttemptState.requires_action and a.provider_ref:
            pending.append((a, a.provider_ref))
            continue
        card = cards[a.saved_card_id]
        to_charge.append((a, SavedCharge(
            card_ref=card.card_ref, customer_ref=card.customer_ref,
            amount_minor=a.amount_minor, currency=a.currency,
            idempotency_key=f"saved-{a.id}",
            description=str(getattr(c, "description", "") or "")[:200],
        )))
    answers: list[tuple[uuid.UUID, SavedChargeResult]] = []
    unanswered: set[str] = set()
    if to_charge:
        try:
            results = await provider.charge_saved([r for _, r in to_charge])
        except Exception:
            log.exception("saved-card charges not answered", extra={"count": len(to_charge)})
            unanswered = {a.idempotency_key for a, _ in to_charge}
        else:
            answers += [(a.id, r) for (a, _), r in zip(to_charge, results, strict=True)]
    if pending:
        answers += await _ask_pending(provider, pending)
    final = {**attempts, **await _record_answers(rt, answers)}
    answered = {a.idempotency_key for a, _ in to_charge} | {a.idempotency_key for a, _ in pending}
    raced = [k for k in answered if final[k] is attempts[k]]
    if raced:  # settled by another process meanwhile: read what it recorded
        async with unit_of_work(rt.sessions) as session:
            final.update(await _attempts_by_key(session, raced))
    out: list[CardChargeResult] = []
    for c in charges:
        result = _from_attempt(final[c.idempotency_key])
        if c.idempotency_key in unanswered and result.status == "pending":
            result = CardChargeResult(
                key=result.key, status="pending", attempt_id=result.attempt_id,
                card_id=result.card_id, decline_code="provider_unavailable",
                amount_minor=result.amount_minor, currency=result.currency,
            )
        out.append(result)
    return out


__all__ = [
    "CardCharge",
    "CardChargeResult",
    "CardNotFound",
    "CardSetupSession",
    "CardState",
    "PaymentCustomer",
    "SavedCard",
    "SetupState",
    "charge_cards",
    "finish_setup",
    "list_cards",
    "remove_card",
    "set_default",
    "start_setup",
]
