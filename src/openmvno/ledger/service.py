"""The ledger: every balance change is one append-only entry; the database moves the balance.

How a change is made (``post``), in one statement on PostgreSQL::

    WITH src AS (SELECT ... FROM buckets WHERE id = :bucket AND account_id = :account
                   AND remaining + :delta >= reserved FOR NO KEY UPDATE),   -- no row -> refused
         ins AS (INSERT INTO balance_entries (...) SELECT ... FROM src
                   ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)  -- replay -> no row
    SELECT src.remaining + :delta FROM ins, src

and the trigger on ``balance_entries`` (migration ``2026_12_02_ledger_books``) applies
the inserted deltas to ``buckets.remaining``. Code never UPDATEs ``remaining``: the
database refuses it, and it refuses a change that would take a bucket below its
reserved amount or zero. Row locks on buckets and lines are ``FOR NO KEY UPDATE`` (what
an UPDATE of non-key columns takes anyway): they still queue every other writer of the
row, but not the foreign-key checks of rows inserted elsewhere that point at it (a
notice or entry for a line another batch holds), so those cannot close a deadlock
circle. A refused change inserts nothing (the journal is append-only:
nothing is ever deleted), so a caller may catch :class:`InsufficientBalance` and carry
on. Nothing is read and written back from Python, so parallel writers on PostgreSQL
cannot lose an update or overdraw (the row lock is taken and the condition re-checked
on the newest row), and a duplicate key never raises, so it never poisons a
transaction. On SQLite every transaction starts with ``BEGIN IMMEDIATE`` and writers
simply queue.

Invariant, for every bucket at every commit: ``remaining == sum(delta)`` and
``0 <= reserved <= remaining``; the database keeps it and :func:`check` audits it.

Set-based posting: :func:`post_many` (all or nothing) and
:func:`openmvno.ledger.batch.post_batch` (record by record) lock the batch's buckets in
id order, decide in Python, and insert every entry with one statement.

Services only flush; the edge (request, job, CLI command) commits.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    Uuid,
    and_,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from openmvno import clock
from openmvno.accounts import tokens
from openmvno.accounts.models import TokenKind
from openmvno.catalog.models import Plan
from openmvno.db import Base, UTCDateTime
from openmvno.db_fast import FastSelect
from openmvno.errors import InvalidInput, NotFound, PaymentRequired
from openmvno.formatting import Formatter, formatter
from openmvno.i18n import N_
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line

__all__ = [
    "BucketBalance",
    "Drift",
    "InsufficientBalance",
    "KindTotal",
    "LineBalance",
    "PlanInfo",
    "Posting",
    "WalletBalance",
    "bucket_count",
    "check",
    "credit_wallet",
    "debit_wallet",
    "expire_due",
    "grant_plan",
    "line_balance",
    "line_balances",
    "owned_line_balance",
    "post",
    "post_many",
    "revoke_order_grants",
    "transfer_wallet",
    "wallet",
    "wallet_balance",
]

BUCKETS: Table = Base.metadata.tables[Bucket.__tablename__]
ENTRIES: Table = Base.metadata.tables[BalanceEntry.__tablename__]
LINE_KINDS = (BucketKind.data, BucketKind.voice, BucketKind.sms)
UNITS = {
    BucketKind.data: "bytes",
    BucketKind.voice: "seconds",
    BucketKind.sms: "count",
    BucketKind.money: "minor",
}
_GRANT_NAMESPACE = uuid.UUID("9b0f4a53-6f0e-4d8e-9a57-0c5e3f1f2b6d")


class InsufficientBalance(PaymentRequired):
    """The bucket does not hold enough for this debit (money, data, minutes or SMS)."""

    def __init__(self, *, bucket_id: uuid.UUID | None = None) -> None:
        super().__init__(
            "insufficient_balance", N_("There is not enough balance for this.")
        )
        self.bucket_id = bucket_id


@dataclass(frozen=True, slots=True)
class Posting:
    """One balance change for :func:`post_many`."""

    bucket_id: uuid.UUID
    account_id: uuid.UUID
    delta: int
    reason: EntryReason
    key: str
    order_id: uuid.UUID | None = None
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Drift:
    """A bucket whose stored balance disagrees with its entries."""

    bucket_id: uuid.UUID
    account_id: uuid.UUID
    kind: BucketKind
    remaining: int
    reserved: int
    entries_sum: int


# --- low-level posting ------------------------------------------------------


def _insert(session: AsyncSession, table: Table) -> Any:
    """The dialect's INSERT (PostgreSQL and SQLite both have ON CONFLICT DO NOTHING)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"ledger does not support the {name} dialect")


def _sync(session: AsyncSession, bucket_id: uuid.UUID, remaining: int) -> None:
    """Tell a Bucket already loaded in this session its new balance (no reload)."""
    obj = session.identity_map.get(identity_key(Bucket, bucket_id))
    if obj is not None:
        set_committed_value(obj, "remaining", remaining)


def _loaded(session: AsyncSession, bucket_id: uuid.UUID) -> bool:
    return session.identity_map.get(identity_key(Bucket, bucket_id)) is not None


_POST_PARAMS = (
    bindparam("bucket_id", type_=Uuid()),
    bindparam("account_id", type_=Uuid()),
    bindparam("delta", type_=BigInteger()),
    bindparam("reason", type_=ENTRIES.c.reason.type),
    bindparam("key", type_=String()),
    bindparam("order_id", type_=Uuid()),
    bindparam("memo", type_=String()),
    bindparam("now", type_=UTCDateTime()),
)
_POST_PG = text(
    """
    WITH src AS (
        SELECT id, account_id, remaining FROM buckets
        WHERE id = :bucket_id AND account_id = :account_id AND remaining + :delta >= reserved
        FOR NO KEY UPDATE
    ), ins AS (
        INSERT INTO balance_entries
            (bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at)
        SELECT id, account_id, :delta, :reason, :key, :order_id, :memo, :now FROM src
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    )
    SELECT src.remaining + :delta FROM ins, src
    """
).bindparams(*_POST_PARAMS)
"""One statement: lock the bucket if it can take ``delta``, insert the entry (the
trigger moves the balance), answer the new balance; no row = replay or refused."""
_POST_SQLITE = text(
    """
    INSERT INTO balance_entries
        (bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at)
    SELECT id, account_id, :delta, :reason, :key, :order_id, :memo, :now FROM buckets
    WHERE id = :bucket_id AND account_id = :account_id AND remaining + :delta >= reserved
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
    """
).bindparams(*_POST_PARAMS)
"""SQLite has one writer (BEGIN IMMEDIATE), so checking first in the same statement is
exact; the row trigger moves the balance."""
_REMAINING = select(BUCKETS.c.remaining).where(BUCKETS.c.id == bindparam("bucket_id", type_=Uuid()))
_WHY_NOT = text(
    """
    SELECT (SELECT 1 FROM balance_entries WHERE idempotency_key = :key) AS posted,
           (SELECT 1 FROM buckets WHERE id = :bucket_id AND account_id = :account_id) AS found
    """
).bindparams(
    bindparam("key", type_=String()),
    bindparam("bucket_id", type_=Uuid()),
    bindparam("account_id", type_=Uuid()),
)


async def post(
    session: AsyncSession,
    *,
    bucket_id: uuid.UUID,
    account_id: uuid.UUID,
    delta: int,
    reason: EntryReason,
    key: str,
    order_id: uuid.UUID | None = None,
    memo: str = "",
) -> bool:
    """Change one bucket by ``delta`` exactly once per ``key``.

    Returns False (and changes nothing) when ``key`` was already posted; raises
    :class:`InsufficientBalance` when the bucket would drop below its reserved
    amount (nothing was written then: the entry is not inserted at all).
    """
    await session.flush()  # Core statements below do not autoflush pending ORM rows
    conn = await session.connection()
    params = {
        "bucket_id": bucket_id,
        "account_id": account_id,
        "delta": delta,
        "reason": reason,
        "key": key,
        "order_id": order_id,
        "memo": memo[:200],
        "now": clock.now(),
    }
    if conn.dialect.name == "postgresql":
        new = (await conn.execute(_POST_PG, params)).scalar()
        if new is not None:
            _sync(session, bucket_id, int(new))
            return True
    elif (await conn.execute(_POST_SQLITE, params)).scalar() is not None:
        if _loaded(session, bucket_id):
            _sync(session, bucket_id, int((await conn.execute(_REMAINING, params)).scalar_one()))
        return True
    posted, found = (await conn.execute(_WHY_NOT, params)).one()
    if posted is not None:
        return False
    if found is None:
        raise NotFound("balance_not_found", "There is no such balance.")
    raise InsufficientBalance(bucket_id=bucket_id)


async def post_many(session: AsyncSession, entries: Sequence[Posting]) -> int:
    """Post a batch set-based, all or nothing; returns how many entries were new.

    Keys repeated in the batch or posted before count once. The buckets are locked in
    id order (concurrent batches cannot deadlock) and the summed new deltas of each are
    checked first: if any bucket would go below its reserved amount nothing is written
    and :class:`InsufficientBalance` is raised. The entries go in with one INSERT and
    the database's trigger moves the balances (see :func:`openmvno.ledger.batch.post_batch`
    for a batch charged record by record)."""
    from openmvno.ledger import batch  # batch builds on this module

    return await batch.post_all(session, entries)


# --- the money wallet -------------------------------------------------------


def _positive(amount_minor: int) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise InvalidInput("amount_invalid", "The amount must be more than zero.")


async def _load_wallet(
    session: AsyncSession, account_id: uuid.UUID, currency: str
) -> Bucket | None:
    return await session.scalar(
        select(Bucket)
        .where(
            Bucket.account_id == account_id,
            Bucket.kind == BucketKind.money,
            Bucket.currency == currency,
        )
        .execution_options(populate_existing=True)
    )


async def wallet(session: AsyncSession, *, account_id: uuid.UUID, currency: str) -> Bucket:
    """The account's money bucket in ``currency``, created on first use (race-safe)."""
    found = await _load_wallet(session, account_id, currency)
    if found is not None:
        return found
    await session.flush()
    now = clock.now()
    await session.execute(
        _insert(session, BUCKETS)
        .values(
            id=uuid.uuid4(),
            account_id=account_id,
            line_id=None,
            kind=BucketKind.money,
            currency=currency,
            plan_id=None,
            order_id=None,
            valid_from=now,
            valid_until=None,
            priority=100,
            initial=0,
            remaining=0,
            reserved=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["account_id", "currency"], index_where=text("kind = 'money'")
        )
    )
    created = await _load_wallet(session, account_id, currency)
    assert created is not None  # inserted just now, or by a racer that committed first
    return created


async def credit_wallet(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str,
    amount_minor: int,
    reason: EntryReason,
    key: str,
    order_id: uuid.UUID | None = None,
    memo: str = "",
) -> Bucket:
    """Add money to the wallet once per ``key``; returns the wallet as it is now."""
    _positive(amount_minor)
    w = await wallet(session, account_id=account_id, currency=currency)
    await post(
        session,
        bucket_id=w.id,
        account_id=account_id,
        delta=amount_minor,
        reason=reason,
        key=key,
        order_id=order_id,
        memo=memo,
    )
    return w


async def debit_wallet(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str,
    amount_minor: int,
    reason: EntryReason,
    key: str,
    order_id: uuid.UUID | None = None,
    memo: str = "",
) -> Bucket:
    """Take money from the wallet once per ``key``; :class:`InsufficientBalance` if short."""
    _positive(amount_minor)
    w = await wallet(session, account_id=account_id, currency=currency)
    await post(
        session,
        bucket_id=w.id,
        account_id=account_id,
        delta=-amount_minor,
        reason=reason,
        key=key,
        order_id=order_id,
        memo=memo,
    )
    return w


async def transfer_wallet(
    session: AsyncSession,
    *,
    from_account_id: uuid.UUID,
    to_account_id: uuid.UUID,
    currency: str,
    amount_minor: int,
    key: str,
    memo: str = "",
) -> None:
    """Move money between two accounts' wallets once per ``key``
    (entries ``key:out`` and ``key:in``)."""
    _positive(amount_minor)
    if from_account_id == to_account_id:
        raise InvalidInput("transfer_to_self", "You cannot transfer money to yourself.")
    source = await wallet(session, account_id=from_account_id, currency=currency)
    target = await wallet(session, account_id=to_account_id, currency=currency)
    # Lock both rows in id order: two opposite transfers cannot deadlock (PostgreSQL).
    await session.execute(
        select(BUCKETS.c.id)
        .where(BUCKETS.c.id.in_([source.id, target.id]))
        .order_by(BUCKETS.c.id)
        .with_for_update(key_share=True)
    )
    common: dict[str, Any] = {"reason": EntryReason.transfer, "memo": memo}
    await post(
        session,
        bucket_id=source.id,
        account_id=from_account_id,
        delta=-amount_minor,
        key=f"{key}:out",
        **common,
    )
    await post(
        session,
        bucket_id=target.id,
        account_id=to_account_id,
        delta=amount_minor,
        key=f"{key}:in",
        **common,
    )


# --- line allowances ----------------------------------------------------------


def _allowances(plan: Plan) -> list[tuple[BucketKind, int]]:
    pairs = [
        (BucketKind.data, plan.data_bytes or 0),
        (BucketKind.voice, plan.voice_seconds or 0),
        (BucketKind.sms, plan.sms_count or 0),
    ]
    return [(kind, amount) for kind, amount in pairs if amount > 0]


async def grant_plan(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    line_id: uuid.UUID,
    plan: Plan,
    order_id: uuid.UUID | None,
    valid_from: datetime,
    valid_until: datetime | None,
    key: str,
    priority: int = 100,
) -> list[Bucket]:
    """One new bucket per non-zero allowance of ``plan`` (data, voice, SMS), each
    filled by a grant entry ``key:<kind>``. Replaying ``key`` returns the same buckets.
    The line's expiry is not touched here (that rule belongs to orders)."""
    await session.flush()
    now = clock.now()
    ids: list[uuid.UUID] = []
    for kind, amount in _allowances(plan):
        entry_key = f"{key}:{kind.value}"
        bucket_id = uuid.uuid5(_GRANT_NAMESPACE, entry_key)
        await session.execute(
            _insert(session, BUCKETS)
            .values(
                id=bucket_id,
                account_id=account_id,
                line_id=line_id,
                kind=kind,
                currency=None,
                plan_id=plan.id,
                order_id=order_id,
                valid_from=valid_from,
                valid_until=valid_until,
                priority=priority,
                initial=amount,
                remaining=0,
                reserved=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        await post(
            session,
            bucket_id=bucket_id,
            account_id=account_id,
            delta=amount,
            reason=EntryReason.grant,
            key=entry_key,
            order_id=order_id,
            memo=plan.code,
        )
        ids.append(bucket_id)
    if not ids:
        return []
    loaded = {
        b.id: b
        for b in await session.scalars(
            select(Bucket).where(Bucket.id.in_(ids)).execution_options(populate_existing=True)
        )
    }
    return [loaded[i] for i in ids]


async def revoke_order_grants(session: AsyncSession, *, order_id: uuid.UUID, key: str) -> int:
    """Refund: take back what is left (beyond any reservation) of every data, voice
    and SMS bucket the order granted; returns how many buckets were touched."""
    c = BUCKETS.c
    rows = (
        await session.execute(
            select(c.id, c.account_id, c.remaining, c.reserved)
            .where(c.order_id == order_id, c.kind != BucketKind.money, c.remaining > c.reserved)
            .order_by(c.id)
            .with_for_update(key_share=True)
        )
    ).all()
    postings = [
        Posting(
            bucket_id=r.id,
            account_id=r.account_id,
            delta=-(r.remaining - r.reserved),
            reason=EntryReason.refund,
            key=f"{key}:{r.id}",
            order_id=order_id,
        )
        for r in rows
    ]
    return await post_many(session, postings)


async def expire_due(
    session: AsyncSession, *, now: datetime | None = None, limit: int | None = None
) -> int:
    """Zero the unreserved rest of line buckets whose ``valid_until`` has passed
    (one ``expire`` entry each); returns how many buckets were expired. Concurrent
    workers skip rows another one holds (PostgreSQL ``SKIP LOCKED``)."""
    now = now or clock.now()
    c = BUCKETS.c
    query = (
        select(c.id, c.account_id, c.remaining, c.reserved)
        .where(
            c.kind != BucketKind.money,
            c.valid_until.is_not(None),
            c.valid_until <= now,
            c.remaining > c.reserved,
        )
        .order_by(c.valid_until, c.id)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await session.execute(query)).all()
    postings = [
        Posting(
            bucket_id=r.id,
            account_id=r.account_id,
            delta=-(r.remaining - r.reserved),
            reason=EntryReason.expire,
            key=f"expire:{r.id}:{r.remaining}",
        )
        for r in rows
    ]
    return await post_many(session, postings)


# --- reading ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketBalance:
    """One bucket as a subscriber sees it: raw units and text in their language."""

    id: uuid.UUID
    kind: BucketKind
    unit: str
    remaining: int
    initial: int
    remaining_text: str
    initial_text: str
    valid_from: datetime
    valid_until: datetime | None
    valid_until_text: str
    active: bool
    """False for a bucket that starts later (an early renewal)."""
    priority: int


@dataclass(frozen=True, slots=True)
class KindTotal:
    """What the line can use right now of one kind, all active buckets together."""

    kind: BucketKind
    unit: str
    remaining: int
    remaining_text: str


@dataclass(frozen=True, slots=True)
class PlanInfo:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class WalletBalance:
    currency: str
    minor: int
    text: str


@dataclass(frozen=True, slots=True)
class LineBalance:
    """Everything the balance screen, the SMS ``BAL`` reply and USSD show."""

    line_id: uuid.UUID
    msisdn: str
    plan: PlanInfo | None
    expires_at: datetime | None
    expires_at_text: str
    auto_renew: bool
    next_renewal_at: datetime | None
    buckets: list[BucketBalance]
    totals: list[KindTotal]
    wallet: WalletBalance


def format_amount(fmt: Formatter, kind: BucketKind, amount: int, currency: str | None) -> str:
    """``amount`` of ``kind`` for people: ``1.5 GB``, ``100 min``, ``50 SMS``, ``¥12.00``."""
    if kind is BucketKind.data:
        return fmt.data(amount)
    if kind is BucketKind.voice:
        return fmt.minutes(amount)
    if kind is BucketKind.sms:
        return fmt.sms(amount)
    return fmt.money(amount, currency or "CNY")


_LINES: Table = Base.metadata.tables[Line.__tablename__]
_PLANS: Table = Base.metadata.tables[Plan.__tablename__]


def _constant(value: enum.StrEnum) -> Any:
    """An enum member as stored (``str_enum`` columns hold the member's name) written into
    the SQL itself: no parameter to bind on every read, and no expanding IN, which is
    rewritten on every execution."""
    if not value.name.isidentifier():
        raise ValueError(f"not a plain SQL constant: {value!r}")
    return literal_column(f"'{value.name}'")


def _balance_select() -> Any:
    """One SELECT for the balance screen of lines: each line with its plan and its owner's
    wallet (in the plan's currency, else ``:currency``), joined to the buckets it shows
    (not past ``valid_until`` at ``:now``, and no refunded bucket that holds nothing); a
    line with no such bucket is one row with NULL bucket columns. Built once: the
    statement and its compiled form are reused by every read."""
    ln, pl = _LINES.c, _PLANS.c
    wallet = BUCKETS.alias("wallet")
    shown = BUCKETS.alias("shown")
    money_currency = func.coalesce(pl.currency, bindparam("currency", type_=String()))
    now = bindparam("now", type_=UTCDateTime())
    refunded = (
        exists()
        .where(ENTRIES.c.bucket_id == shown.c.id, ENTRIES.c.reason == _constant(EntryReason.refund))
        .correlate(shown)
    )
    return (
        select(
            ln.id, ln.msisdn, ln.expires_at, ln.auto_renew, pl.code, pl.name_zh, pl.name_en,
            money_currency.label("money_currency"), wallet.c.remaining.label("wallet_minor"),
            shown.c.id.label("bucket_id"), shown.c.kind, shown.c.remaining, shown.c.initial,
            shown.c.valid_from, shown.c.valid_until, shown.c.priority,
        )
        .select_from(
            _LINES.outerjoin(_PLANS, pl.id == ln.plan_id)
            .outerjoin(
                wallet,
                and_(
                    wallet.c.account_id == ln.account_id,
                    wallet.c.kind == _constant(BucketKind.money),
                    wallet.c.currency == money_currency,
                ),
            )
            .outerjoin(
                shown,
                and_(
                    shown.c.line_id == ln.id,
                    shown.c.kind.in_([_constant(kind) for kind in LINE_KINDS]),
                    or_(shown.c.valid_until.is_(None), shown.c.valid_until > now),
                    or_(shown.c.remaining > literal_column("0"), ~refunded),
                ),
            )
        )
        .order_by(ln.id, shown.c.valid_from, shown.c.priority, shown.c.created_at)
    )


# Typed bind parameters: a foreign key column's type may not be known yet at import time.
_ACCOUNT_ID = bindparam("account_id", type_=Uuid())
_BALANCE = _balance_select()
_BALANCE_OF_LINE_SQL = _BALANCE.where(_LINES.c.id == bindparam("line_id", type_=Uuid()))
_BALANCE_OF_LINE = FastSelect(_BALANCE_OF_LINE_SQL)
_BALANCE_OF_OWNED_LINE = FastSelect(_BALANCE_OF_LINE_SQL.where(_LINES.c.account_id == _ACCOUNT_ID))
_BALANCE_OF_TOKEN_LINE = FastSelect(
    _BALANCE_OF_LINE_SQL.where(_LINES.c.account_id == tokens.live_token_account())
)
_BALANCES_OF_LINES = _BALANCE.where(
    _LINES.c.id.in_(bindparam("line_ids", type_=Uuid(), expanding=True))
)
_BALANCES_OF_OWNED_LINES = _BALANCE.where(
    _LINES.c.id.in_(bindparam("line_ids", type_=Uuid(), expanding=True)),
    _LINES.c.account_id == _ACCOUNT_ID,
)
_WALLET_BALANCE = select(BUCKETS.c.remaining).where(
    BUCKETS.c.account_id == _ACCOUNT_ID,
    BUCKETS.c.kind == BucketKind.money,
    BUCKETS.c.currency == bindparam("currency", type_=String()),
)


def _balances(rows: Sequence[Any], language: str, now: datetime) -> dict[uuid.UUID, LineBalance]:
    """Shape the rows of :func:`_balance_select` (ordered by line) into balances."""
    fmt = formatter(language)
    grouped: dict[uuid.UUID, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.id, []).append(row)
    out: dict[uuid.UUID, LineBalance] = {}
    for line_id, line_rows in grouped.items():
        first = line_rows[0]
        shown = [
            BucketBalance(
                id=r.bucket_id,
                kind=BucketKind(r.kind),
                unit=UNITS[BucketKind(r.kind)],
                remaining=r.remaining,
                initial=r.initial,
                remaining_text=format_amount(fmt, BucketKind(r.kind), r.remaining, None),
                initial_text=format_amount(fmt, BucketKind(r.kind), r.initial, None),
                valid_from=r.valid_from,
                valid_until=r.valid_until,
                valid_until_text=fmt.date(r.valid_until),
                active=r.valid_from <= now,
                priority=r.priority,
            )
            for r in line_rows
            if r.bucket_id is not None
        ]
        shown.sort(
            key=lambda b: (LINE_KINDS.index(b.kind), not b.active, b.priority, b.valid_from)
        )
        totals = []
        for kind in LINE_KINDS:
            active = [b.remaining for b in shown if b.kind is kind and b.active]
            if active:
                amount = sum(active)
                totals.append(
                    KindTotal(kind, UNITS[kind], amount, format_amount(fmt, kind, amount, None))
                )
        plan = None
        if first.code is not None:
            name = first.name_zh if language == "zh-CN" else first.name_en
            plan = PlanInfo(first.code, name)
        balance = int(first.wallet_minor or 0)
        out[line_id] = LineBalance(
            line_id=line_id,
            msisdn=first.msisdn,
            plan=plan,
            expires_at=first.expires_at,
            expires_at_text=fmt.date(first.expires_at),
            auto_renew=first.auto_renew,
            next_renewal_at=first.expires_at if first.auto_renew else None,
            buckets=shown,
            totals=totals,
            wallet=WalletBalance(
                first.money_currency, balance, fmt.money(balance, first.money_currency)
            ),
        )
    return out


async def _read_balances(
    session: AsyncSession | AsyncConnection,
    statement: Any,
    *,
    language: str,
    currency: str,
    **params: Any,
) -> dict[uuid.UUID, LineBalance]:
    if isinstance(session, AsyncSession):
        await session.flush()  # a Core SELECT does not autoflush pending ORM changes
    now = clock.now()
    values = {"now": now, "currency": currency, **params}
    if isinstance(statement, FastSelect):
        rows = await statement.all(session, values)
    else:
        conn = session if isinstance(session, AsyncConnection) else await session.connection()
        rows = (await conn.execute(statement, values)).all()
    return _balances(rows, language, now)


async def line_balance(
    session: AsyncSession, *, line: Line, language: str, currency: str = "CNY"
) -> LineBalance:
    """The line's current and upcoming allowances, plan, expiry and the owner's wallet
    (one SELECT; see :func:`owned_line_balance` for a line known only by its id).

    Buckets past ``valid_until`` are left out, and so are refunded ones that hold
    nothing. The wallet is shown in the plan's currency (else ``currency``); it is
    not created by looking at it.
    """
    found = await _read_balances(
        session, _BALANCE_OF_LINE, language=language, currency=currency, line_id=line.id
    )
    return found[line.id]


async def owned_line_balance(
    session: AsyncSession | AsyncConnection,
    *,
    account_id: uuid.UUID,
    line_id: uuid.UUID,
    language: str,
    currency: str = "CNY",
) -> LineBalance:
    """:func:`line_balance` of one of this account's lines, in one SELECT (through a
    session or a read connection); anyone else's line (or no line) is "not found", so
    existence never leaks."""
    found = await _read_balances(
        session, _BALANCE_OF_OWNED_LINE, language=language, currency=currency,
        line_id=line_id, account_id=account_id,
    )
    if line_id not in found:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return found[line_id]


async def token_line_balance(
    conn: AsyncSession | AsyncConnection,
    *,
    token: str,
    line_id: uuid.UUID,
    language: str,
    currency: str = "CNY",
) -> LineBalance | None:
    """:func:`owned_line_balance` for the caller of a live access token ``token``, the
    token checked inside the same SELECT (the hottest read: one round trip). None when
    the token is not good or the line is not its account's: ask
    :func:`openmvno.accounts.tokens.authenticate` which, to answer 401 or 404."""
    found = await _read_balances(
        conn, _BALANCE_OF_TOKEN_LINE, language=language, currency=currency,
        line_id=line_id, **tokens.token_params(token, TokenKind.access),
    )
    return found.get(line_id)


async def line_balances(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    line_ids: Sequence[uuid.UUID],
    language: str,
    currency: str = "CNY",
) -> dict[uuid.UUID, LineBalance]:
    """:func:`line_balance` of many of this account's lines, in one SELECT whatever their
    number; ids that are not the account's are left out."""
    if not line_ids:
        return {}
    return await _read_balances(
        session, _BALANCES_OF_OWNED_LINES, language=language, currency=currency,
        line_ids=list(line_ids), account_id=account_id,
    )


async def balances_of_lines(
    session: AsyncSession, lines: Sequence[tuple[uuid.UUID, str]], *, currency: str = "CNY"
) -> dict[uuid.UUID, LineBalance]:
    """:func:`line_balance` of many lines of any owners, each ``(line id, language)``: one
    SELECT per language asked for, whatever the number of lines (the SMS channel answers
    a batch of ``BAL`` texts with it)."""
    by_language: dict[str, list[uuid.UUID]] = {}
    for line_id, language in lines:
        by_language.setdefault(language, []).append(line_id)
    found: dict[uuid.UUID, LineBalance] = {}
    for language, ids in sorted(by_language.items()):
        found.update(await _read_balances(
            session, _BALANCES_OF_LINES, language=language, currency=currency, line_ids=ids
        ))
    return found


async def wallet_balance(session: AsyncSession, *, account_id: uuid.UUID, currency: str) -> int:
    """The account's wallet balance in minor units, 0 when it has none yet (reading it
    never creates it; :func:`wallet` does, when money moves)."""
    await session.flush()
    conn = await session.connection()
    found = await conn.scalar(_WALLET_BALANCE, {"account_id": account_id, "currency": currency})
    return int(found or 0)


async def bucket_count(session: AsyncSession) -> int:
    """How many buckets exist (what :func:`check` looked at)."""
    return int(await session.scalar(select(func.count()).select_from(BUCKETS)) or 0)


async def check(session: AsyncSession) -> list[Drift]:
    """Buckets whose ``remaining`` differs from the sum of their entries, or whose
    ``remaining``/``reserved`` are out of bounds. An empty list means all is well."""
    sums = (
        select(ENTRIES.c.bucket_id, func.sum(ENTRIES.c.delta).label("total"))
        .group_by(ENTRIES.c.bucket_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    c = BUCKETS.c
    rows = await session.execute(
        select(c.id, c.account_id, c.kind, c.remaining, c.reserved, total)
        .select_from(BUCKETS.outerjoin(sums, sums.c.bucket_id == c.id))
        .where(
            or_(c.remaining != total, c.remaining < 0, c.reserved < 0, c.reserved > c.remaining)
        )
        .order_by(c.account_id, c.id)
    )
    return [
        Drift(
            bucket_id=r[0],
            account_id=r[1],
            kind=BucketKind(r[2]),
            remaining=int(r[3]),
            reserved=int(r[4]),
            entries_sum=int(r[5]),
        )
        for r in rows
    ]
