"""The set-based renewal batch (contract 7): renew many lines' plans in a fixed number of
statements, with the same effects as a paid order's fulfilment
(:mod:`openmvno.orders.fulfilment`).

:func:`renew_batch` takes the lines RENEWALS found due. For each line, in one transaction
(the caller's) and whatever the batch's size, a fixed number of statements:

1. lock the wallets of the batch's accounts, then the lines (id order: the same order as
   a wallet payment followed by its fulfilment, so they queue rather than deadlock);
2. the periods already renewed (``renewal_runs``): those lines are a ``duplicate``, and so
   is a line whose expiry is no longer the period asked for (renewed by another path);
   a line that is gone, terminated or someone else's, or a plan that is gone, is
   ``unavailable``;
3. wallet-funded lines the wallet cannot cover (after the lines before them in the batch)
   are ``insufficient``: nothing at all happens for them;
4. for every renewed line: an order (kind ``plan``, state ``fulfilled``, the plan's name
   and price as orders store them, ``result`` like fulfilment's), its payment attempt (the
   wallet's, created here; a card's, captured before, is linked to the order), the
   wallet debit (``ledger.batch.post_batch``), the ``renewal_runs`` row (UNIQUE per line
   and period: exactly once), the plan's buckets (grant entries, keyed like
   ``ledger.grant_plan`` with the order's key), the expiry extended by the stacking rule
   (from the current expiry if it is still ahead, else from now), a grace or suspended
   line restored (``lines.lifecycle.restore_many``: its event, the network's ``restore``
   job and the ``restored`` notice), a data bar lifted, the order's provisioning job, the
   ``renewal_succeeded`` notice (``notifications.notices.notify_many``), and last the
   receipt with the next number of the gapless sequence (N numbers with one ``UPDATE …
   SET value = value + N RETURNING``). The order's ``result`` names the receipt by id
   only: the number is known after the order is written, and readers take it from the
   receipt (``receipts.service.fill_numbers``) rather than the batch writing every order
   twice.
   The counter's row stays locked until the transaction ends, and every other batch and
   order queues on it: taken last, it is held for one more statement and the commit, not
   for the whole batch (taken first, four workers ran one after the other).

New rows get time-ordered ids (``openmvno.ids``). A "card" renewal's money was captured
before the call; when its line turns out ``unavailable`` or ``duplicate`` the caller
refunds that payment.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan
from openmvno.db import Base, among
from openmvno.formatting import to_operator
from openmvno.ids import new_id, new_ids
from openmvno.ledger.batch import post_batch, post_new
from openmvno.ledger.models import Bucket, BucketKind, EntryReason
from openmvno.ledger.service import Posting, _allowances
from openmvno.lines import lifecycle
from openmvno.lines.models import Line, LineState
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.notifications.notices import NoticeRequest, notify_many
from openmvno.orders.models import Order, OrderKind, OrderState, ProvisioningState
from openmvno.payments.models import AttemptState, PaymentAttempt, PaymentMethodKind
from openmvno.receipts.models import Receipt
from openmvno.receipts.models import Sequence as Counter
from openmvno.receipts.service import RECEIPT_SEQUENCE, format_number
from openmvno.renewals.runs import RenewalRun, RunFunding
from openmvno.runtime import Runtime
from openmvno.usage import barring
from openmvno.usage.models import LineBar

__all__ = ["DueRenewal", "OutcomeStatus", "RenewalOutcome", "renew_batch", "update_rows"]

OutcomeStatus = Literal["renewed", "insufficient", "duplicate", "unavailable"]


@dataclass(frozen=True, slots=True)
class DueRenewal:
    """One line to renew for the period ``period_key`` (its expiry as ISO UTC)."""

    line_id: uuid.UUID
    account_id: uuid.UUID
    plan_id: uuid.UUID
    period_key: str
    funding: Literal["wallet", "card"]
    payment_attempt_id: uuid.UUID | None = None
    """"card": the captured charge (``payments.cards.charge_cards``)."""


@dataclass(frozen=True, slots=True)
class RenewalOutcome:
    line_id: uuid.UUID
    status: OutcomeStatus
    expires_at: datetime | None = None
    """The new expiry (renewed only)."""
    order_id: uuid.UUID | None = None
    receipt_number: str | None = None


def _table(model: type[Base]) -> Table:
    return Base.metadata.tables[str(model.__tablename__)]


BUCKETS = _table(Bucket)
LINES = _table(Line)
ORDERS = _table(Order)
ATTEMPTS = _table(PaymentAttempt)
RUNS = _table(RenewalRun)
RECEIPTS = _table(Receipt)
OUTBOX = _table(OutboxMessage)
COUNTERS = _table(Counter)
ACCOUNTS = _table(Account)
BARS = _table(LineBar)

_LAPSED = (LineState.grace.value, LineState.suspended.value)


def period_key(expires_at: datetime) -> str:
    """The period an expiry closes, as ``renewal_runs.period_key`` stores it (ISO UTC;
    the same as ``renewals.schedule.period_key``)."""
    return expires_at.astimezone(UTC).isoformat()


def _order_number(now: datetime) -> str:
    """Like every order's number (``orders.service``): the day and 10 random hex digits."""
    return f"O{now:%Y%m%d}{secrets.token_hex(5).upper()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _insert(session: AsyncSession, table: Table) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


_ARRAY_CASTS: dict[tuple[str, str], tuple[str, tuple[str, ...], tuple[Any, ...]]] = {}


def _insert_plan(
    dialect: Any, table: Table, columns: tuple[str, ...], suffix: str
) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
    """The SQL of a many-row insert into ``table`` (its ``columns``) for ``dialect``, with
    the columns' own bind processors (SQLAlchemy's, taken once): PostgreSQL ``INSERT …
    SELECT FROM unnest($1::type[], …)`` (one statement, one array per column; JSON goes
    as text and is cast back), SQLite one ``executemany``."""
    key = (dialect.name, f"{table.name}:{','.join(columns)}:{suffix}")
    plan = _ARRAY_CASTS.get(key)
    if plan is None:
        cols = [table.c[name] for name in columns]
        procs = tuple(c.type._cached_bind_processor(dialect) for c in cols)
        names = ", ".join(f'"{c.name}"' for c in cols)
        if dialect.name == "postgresql":
            types = [c.type.compile(dialect=dialect) for c in cols]
            arrays = ", ".join(
                f"${i}::{'text' if t in ('JSON', 'JSONB') else t}[]"
                for i, t in enumerate(types, 1)
            )
            picks = ", ".join(
                f"c{i}::{t}" if t in ("JSON", "JSONB") else f"c{i}"
                for i, t in enumerate(types, 1)
            )
            aliases = ", ".join(f"c{i}" for i in range(1, len(cols) + 1))
            head = f"INSERT INTO {table.name} ({names}) SELECT {picks}"
            sql = f"{head} FROM unnest({arrays}) AS t({aliases}) {suffix}"
        else:
            marks = ", ".join("?" for _ in cols)
            sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) {suffix}"  # noqa: S608
        plan = _ARRAY_CASTS[key] = (sql, columns, procs)
    return plan


def _defaults(table: Table, given: Sequence[str]) -> dict[str, Any]:
    """The scalar defaults of the columns a row leaves out (what Core would fill in)."""
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given:
            continue
        default = column.default
        if default is None:
            out[column.name] = None
        elif getattr(default, "is_scalar", False):
            out[column.name] = default.arg  # type: ignore[attr-defined]
        else:
            raise ValueError(f"{table.name}.{column.name} needs a value")
    return out


def _bound_columns(
    procs: Sequence[Any], rows: Sequence[Sequence[Any]]
) -> list[list[Any]]:
    """``rows`` turned into columns, each value bound by its column's processor (as
    SQLAlchemy would bind it; ``None`` stays ``None``)."""
    return [
        [v if proc is None or v is None else proc(v) for v in column]
        for proc, column in zip(procs, zip(*rows, strict=True), strict=True)
    ]


async def _insert_many(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], suffix: str = ""
) -> None:
    """``rows`` (dicts with the same keys) into ``table`` in one statement straight to the
    driver: no per-row compilation (see :func:`_insert_plan`)."""
    if not rows:
        return
    extra = _defaults(table, list(rows[0]))
    columns = tuple(rows[0]) + tuple(extra)
    conn = await session.connection()
    sql, names, procs = _insert_plan(conn.dialect, table, columns, suffix)
    values = [[r[n] for n in names[: len(rows[0])]] + list(extra.values()) for r in rows]
    cols = _bound_columns(procs, values)
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(sql, tuple(cols))
    else:
        await conn.exec_driver_sql(sql, list(zip(*cols, strict=True)))


_UPDATE_PLANS: dict[tuple[str, str], tuple[str, tuple[Any, ...]]] = {}


def _update_plan(dialect: Any, table: Table, columns: tuple[str, ...], fixed: str, where: str
                 ) -> tuple[str, tuple[Any, ...]]:
    """The SQL of a many-row ``UPDATE`` by id of ``table``'s ``columns`` (``fixed`` is
    a literal ``SET`` clause added as is, e.g. ``claimed_until = NULL``; ``where`` a
    literal condition added to the id's), with the columns' bind processors: PostgreSQL
    ``UPDATE … FROM unnest($1::uuid[], …)``, SQLite one ``executemany`` of ``(values…,
    id)``."""
    key = (dialect.name, f"{table.name}:{','.join(columns)}:{fixed}:{where}")
    plan = _UPDATE_PLANS.get(key)
    if plan is None:
        cols = [table.c[name] for name in ("id", *columns)]
        procs = tuple(c.type._cached_bind_processor(dialect) for c in cols)
        postgres = dialect.name == "postgresql"
        sets = [f'"{c}" = t.c{i}' if postgres else f'"{c}" = ?'
                for i, c in enumerate(columns, 2)]
        sets += [fixed] if fixed else []
        if postgres:
            types = [c.type.compile(dialect=dialect) for c in cols]
            arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
            aliases = ", ".join(f"c{i}" for i in range(1, len(cols) + 1))
            sql = (f"UPDATE {table.name} SET {', '.join(sets)} FROM unnest({arrays}) "  # noqa: S608
                   f"AS t({aliases}) WHERE {table.name}.id = t.c1")
        else:
            sql = f"UPDATE {table.name} SET {', '.join(sets)} WHERE id = ?"  # noqa: S608
        if where:
            sql += f" AND {where}"
        plan = _UPDATE_PLANS[key] = (sql, procs)
    return plan


async def update_rows(
    session: AsyncSession, table: Table, columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]], *, fixed: str = "", where: str = "",
) -> None:
    """Many rows of ``table`` updated by id in one statement straight to the driver:
    each row is ``(id, value of each of columns…)``; ``fixed`` is a literal ``SET``
    clause applied to every row, ``where`` a literal condition every row must also meet
    (see :func:`_update_plan`)."""
    if not rows:
        return
    conn = await session.connection()
    sql, procs = _update_plan(conn.dialect, table, columns, fixed, where)
    cols = _bound_columns(procs, rows)
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(sql, tuple(cols))
    else:
        await conn.exec_driver_sql(sql, [(*r[1:], r[0]) for r in zip(*cols, strict=True)])


@dataclass(slots=True)
class _Renewal:
    due: DueRenewal
    line: Any
    plan: Plan
    order_id: uuid.UUID
    number: str
    valid_from: datetime
    until: datetime
    receipt_number: str = ""
    attempt_id: uuid.UUID | None = None


async def renew_batch(
    rt_or_session: Runtime | AsyncSession, due: Sequence[DueRenewal]
) -> list[RenewalOutcome]:
    """Renew ``due`` set-based in the caller's transaction (see the module doc); one
    outcome per request, in order. Given a :class:`Runtime`, it opens and commits its own
    unit of work."""
    if isinstance(rt_or_session, Runtime):
        from openmvno.db import unit_of_work

        async with unit_of_work(rt_or_session.sessions) as session:
            return await renew_batch(session, due)
    session = rt_or_session
    if not due:
        return []
    await session.flush()
    now = clock.now()
    status: dict[int, OutcomeStatus] = {}
    first: dict[uuid.UUID, int] = {}
    for i, d in enumerate(due):
        if d.line_id in first:
            status[i] = "duplicate"  # the same line twice in one batch
        else:
            first[d.line_id] = i

    plans = {
        p.id: p
        for p in await session.scalars(select(Plan).where(Plan.id.in_({d.plan_id for d in due})))
    }
    currencies = {p.currency for p in plans.values()}
    account_ids = sorted({d.account_id for d in due})
    b = BUCKETS.c
    wallets: dict[tuple[uuid.UUID, str], list[Any]] = {
        (r.account_id, r.currency): [r.id, r.remaining - r.reserved]
        for r in await session.execute(
            select(b.id, b.account_id, b.currency, b.remaining, b.reserved)
            .where(b.kind == BucketKind.money, among(session, b.account_id, account_ids),
                   b.currency.in_(sorted(currencies)))
            .order_by(b.id)
            .with_for_update(key_share=True)
        )
    }
    ln = LINES.c
    lines = {
        r.id: r
        for r in await session.execute(
            select(ln.id, ln.account_id, ln.state, ln.expires_at, ln.msisdn, ln.iccid)
            .where(among(session, ln.id, sorted(first)))
            .order_by(ln.id)
            .with_for_update(key_share=True)
        )
    }
    done = {
        (r.line_id, r.period_key)
        for r in await session.execute(
            select(RUNS.c.line_id, RUNS.c.period_key)
            .where(among(session, RUNS.c.line_id, sorted(first)))
        )
    }
    people = {
        r.id: r
        for r in await session.execute(
            select(ACCOUNTS.c.id, ACCOUNTS.c.name, ACCOUNTS.c.language)
            .where(among(session, ACCOUNTS.c.id, account_ids))
        )
    }

    renewals: dict[int, _Renewal] = {}
    for i, d in enumerate(due):
        if i in status:
            continue
        line, plan = lines.get(d.line_id), plans.get(d.plan_id)
        if (
            line is None or plan is None or line.account_id != d.account_id
            or str(line.state) in (LineState.terminated.value, LineState.inventory.value)
            or d.account_id not in people
        ):
            status[i] = "unavailable"
            continue
        if (d.line_id, d.period_key) in done or line.expires_at is None \
                or period_key(line.expires_at) != d.period_key:
            status[i] = "duplicate"
            continue
        if d.funding == "wallet":
            wallet = wallets.get((d.account_id, plan.currency))
            if wallet is None or wallet[1] < plan.price_minor:
                status[i] = "insufficient"
                continue
            wallet[1] -= plan.price_minor
        elif d.payment_attempt_id is None:
            raise ValueError(f"a card renewal needs its payment attempt: {d.line_id}")
        valid_from = line.expires_at if line.expires_at > now else now
        renewals[i] = _Renewal(
            due=d, line=line, plan=plan, order_id=new_id(), number=_order_number(now),
            valid_from=valid_from, until=valid_from + timedelta(days=plan.validity_days),
            attempt_id=d.payment_attempt_id,
        )
        status[i] = "renewed"

    if renewals:
        await _carry_out(session, list(renewals.values()), wallets, people, now)
    return [
        RenewalOutcome(
            d.line_id, status[i],
            expires_at=renewals[i].until if i in renewals else None,
            order_id=renewals[i].order_id if i in renewals else None,
            receipt_number=renewals[i].receipt_number if i in renewals else None,
        )
        for i, d in enumerate(due)
    ]


async def _receipt_numbers(session: AsyncSession, count: int, now: datetime) -> list[str]:
    """``count`` consecutive numbers of the gapless receipt sequence in one UPDATE (the
    row stays locked until the transaction ends; a rollback gives them back)."""
    c = COUNTERS.c
    bump = (
        update(COUNTERS).where(c.name == RECEIPT_SEQUENCE)
        .values(value=c.value + count).returning(c.value)
    )
    last = (await session.execute(bump)).scalar_one_or_none()
    if last is None:
        await session.execute(
            _insert(session, COUNTERS).values(name=RECEIPT_SEQUENCE, value=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        last = (await session.execute(bump)).scalar_one()
    year = to_operator(now).year  # the operator's calendar year, as receipts.issue numbers
    return [format_number(year, v) for v in range(int(last) - count + 1, int(last) + 1)]


def _names(plan: Plan) -> dict[str, Any]:
    return {"name_zh": plan.name_zh, "name_en": plan.name_en, "code": plan.code}


async def _carry_out(
    session: AsyncSession,
    todo: list[_Renewal],
    wallets: dict[tuple[uuid.UUID, str], list[Any]],
    people: dict[uuid.UUID, Any],
    now: datetime,
) -> None:
    receipt_ids = new_ids(len(todo))
    run_ids, job_ids = new_ids(len(todo)), new_ids(len(todo))
    grants: list[tuple[_Renewal, BucketKind, int, uuid.UUID, str]] = []
    granted: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in todo:
        shown = granted[r.order_id] = []
        for kind, amount in _allowances(r.plan):
            # A new bucket of a new order: a time-ordered id (ledger.grant_plan derives
            # its from the key so that a retried fulfilment finds it; a batch's orders
            # are new every time, so there is nothing to find again).
            key = f"order:{r.order_id}:grant:{kind.value}"
            grants.append((r, kind, amount, new_id(), key))
            shown.append({"kind": kind.value, "amount": amount, "valid_from": _iso(r.valid_from),
                          "valid_until": _iso(r.until)})
        if r.due.funding == "wallet":
            r.attempt_id = new_id()

    # The orders, fulfilled, as a paid order's fulfilment leaves them.
    order_rows = []
    for r, receipt_id in zip(todo, receipt_ids, strict=True):
        language = people[r.due.account_id].language
        order_rows.append({
            "id": r.order_id, "number": r.number, "account_id": r.due.account_id,
            "line_id": r.due.line_id, "credited_account_id": None, "guest_link_hash": None,
            "msisdn": r.line.msisdn, "kind": OrderKind.plan, "plan_id": r.plan.id,
            "amount_minor": r.plan.price_minor, "currency": r.plan.currency,
            "description": r.plan.name(language)[:200],
            "idempotency_scope": "renewal",
            "idempotency_key": f"{r.due.line_id}:{r.due.period_key}",
            "request_hash": hashlib.sha256(
                f"renewal:{r.due.line_id}:{r.due.period_key}".encode()
            ).hexdigest(),
            "state": OrderState.fulfilled, "failure_code": None,
            "provisioning": ProvisioningState.pending,
            "result": {
                "line_id": str(r.due.line_id), "msisdn": r.line.msisdn,
                "plan_code": r.plan.code, "previous_expires_at": _iso(r.line.expires_at),
                "expires_at": _iso(r.until), "granted": granted[r.order_id],
                "receipt_id": str(receipt_id),  # its number: the receipt's (fill_numbers)
                "renewal": {"period_key": r.due.period_key, "funding": r.due.funding},
            },
            "paid_at": now, "fulfilled_at": now, "cancelled_at": None, "refunded_at": None,
            "created_at": now, "updated_at": now,
        })
    await _insert_many(session, ORDERS, order_rows)

    # Their payments: the wallet's attempt is made here; a captured card's is linked.
    wallet_attempts: list[dict[str, Any]] = [
        {"id": r.attempt_id, "order_id": r.order_id, "account_id": r.due.account_id,
         "provider": "wallet", "idempotency_key": None, "saved_card_id": None,
         "method": PaymentMethodKind.wallet, "provider_ref": None,
         "amount_minor": r.plan.price_minor, "currency": r.plan.currency,
         "state": AttemptState.succeeded, "failure_code": None, "next_action": {},
         "settled_at": now, "created_at": now, "updated_at": now}
        for r in todo if r.due.funding == "wallet"
    ]
    if wallet_attempts:
        await _insert_many(session, ATTEMPTS, wallet_attempts)
    card_links = [(r.attempt_id, r.order_id) for r in todo
                  if r.due.funding == "card" and r.attempt_id is not None]
    await update_rows(session, ATTEMPTS, ("order_id", "updated_at"),
                      [(a, o, now) for a, o in card_links],
                      where="payment_attempts.order_id IS NULL")
    debits = [
        Posting(wallets[(r.due.account_id, r.plan.currency)][0], r.due.account_id,
                -r.plan.price_minor, EntryReason.payment, f"order:{r.order_id}:wallet",
                order_id=r.order_id, memo=r.number)
        for r in todo if r.due.funding == "wallet"
    ]
    if debits:
        charged = await post_batch(session, debits)
        if any(a.status != "applied" for a in charged):  # the wallets are locked: never
            raise RuntimeError("a renewal's wallet debit was refused after the check")

    # Exactly once per line and period.
    await _insert_many(session, RUNS, [
        {"id": run_id, "line_id": r.due.line_id, "account_id": r.due.account_id,
         "plan_id": r.plan.id, "period_key": r.due.period_key, "order_id": r.order_id,
         "funding": RunFunding(r.due.funding), "payment_attempt_id": r.attempt_id,
         "amount_minor": r.plan.price_minor, "currency": r.plan.currency, "created_at": now}
        for r, run_id in zip(todo, run_ids, strict=True)
    ])

    # The plan's buckets, filled by grant entries.
    if grants:
        await _insert_many(session, BUCKETS, [
            {"id": bucket_id, "account_id": r.due.account_id, "line_id": r.due.line_id,
             "kind": kind, "currency": None, "plan_id": r.plan.id, "order_id": r.order_id,
             "valid_from": r.valid_from, "valid_until": r.until, "priority": 100,
             "initial": amount, "remaining": 0, "reserved": 0, "last_entry_id": None,
             "created_at": now, "updated_at": now}
            for r, kind, amount, bucket_id, _key in grants
        ])
        await post_new(session, [  # new buckets, keys of new orders: nothing to lock
            Posting(bucket_id, r.due.account_id, amount, EntryReason.grant, key,
                    order_id=r.order_id, memo=r.plan.code)
            for r, _kind, amount, bucket_id, key in grants
        ])

    # The expiry moves on (stacking), the plan is the one renewed.
    await update_rows(session, LINES, ("expires_at", "plan_id", "updated_at"),
                      [(r.due.line_id, r.until, r.plan.id, now) for r in todo])
    for r in todo:
        obj = session.identity_map.get(identity_key(Line, r.due.line_id))
        if obj is not None:
            set_committed_value(obj, "expires_at", r.until)
            set_committed_value(obj, "plan_id", r.plan.id)

    # 复机: a grace or suspended line is back (its event, the network job, the notice).
    lapsed = [r for r in todo if str(r.line.state) in _LAPSED]
    if lapsed:
        await lifecycle.restore_many(
            session, [r.due.line_id for r in lapsed], reason="renewed",
            plans={r.due.line_id: r.plan for r in lapsed},
        )
        for r in lapsed:
            obj = session.identity_map.get(identity_key(Line, r.due.line_id))
            if obj is not None:
                set_committed_value(obj, "state", LineState.active)
    # A line that ran out of data may use it again (rare: one look, then one per bar).
    barred = (await session.execute(
        select(BARS.c.line_id)
        .where(among(session, BARS.c.line_id, [r.due.line_id for r in todo]),
               BARS.c.barred.is_(True))
    )).scalars().all()
    for line_id in barred:
        await barring.lift_if_barred(session, line_id)

    # The order's provisioning job, as for every plan order.
    await _insert_many(
        session, OUTBOX,
        [{"id": job_id, "kind": OutboxKind.provision,
          "dedupe_key": f"provision:{r.order_id}", "account_id": r.due.account_id,
          "recipient": r.line.msisdn, "subject": "", "body": "",
          "payload": {"order_id": str(r.order_id)}, "attempts": 0, "next_attempt_at": now,
          "last_error": "", "created_at": now}
         for r, job_id in zip(todo, job_ids, strict=True)],
        "ON CONFLICT (dedupe_key) DO NOTHING",
    )
    await notify_many(session, [
        NoticeRequest(
            account_id=r.due.account_id, event="renewal_succeeded",
            key=f"renewal_succeeded:{r.due.line_id}:{r.due.period_key}", line_id=r.due.line_id,
            params={"plan": r.plan, "expires_at": r.until, "amount_minor": r.plan.price_minor,
                    "currency": r.plan.currency},
        )
        for r in todo
    ])

    # Last, the receipts: numbers of the gapless sequence lock its one row until the
    # transaction ends, so every other worker's batch waits for it from here on — only
    # for the receipts INSERT (and the caller's commit), not for the whole batch.
    for r, number in zip(todo, await _receipt_numbers(session, len(todo), now), strict=True):
        r.receipt_number = number
    await _insert_many(session, RECEIPTS, [
        {"id": receipt_id, "number": r.receipt_number, "order_id": r.order_id,
         "account_id": r.due.account_id, "buyer": str(people[r.due.account_id].name)[:100],
         "msisdn": r.line.msisdn,
         "items": [{**_names(r.plan), "quantity": 1, "amount_minor": r.plan.price_minor}],
         "total_minor": r.plan.price_minor, "currency": r.plan.currency,
         "payment_method": r.due.funding, "issued_at": now}
        for r, receipt_id in zip(todo, receipt_ids, strict=True)
    ])
