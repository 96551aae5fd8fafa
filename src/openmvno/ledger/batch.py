"""Set-based posting: a batch of ledger changes in a fixed number of statements.

:func:`post_batch` (contract 1) charges a batch record by record: debits on one bucket
are considered in input order, a debit the bucket cannot cover is ``refused`` (or, with
``partial=True``, applied as far as the bucket goes: ``partial``) without undoing any
other posting, and a key posted before (or earlier in the batch) is a ``duplicate``.
:func:`post_all` (behind ``ledger.service.post_many``) is the all-or-nothing variant.

Whatever the batch's size, three statements, each written once as plain SQL for its
dialect and sent straight to the driver (no SQLAlchemy compilation per call; the
driver's prepared-statement cache keeps the plan):

1. lock the batch's buckets in id order and read their balances
   (PostgreSQL ``SELECT … WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE``: two batches over
   the same buckets queue instead of deadlocking; SQLite has one writer);
2. which of the keys are already in the journal;
3. insert the entries that take effect (PostgreSQL: ``INSERT … SELECT FROM unnest(…)``;
   SQLite: ``INSERT … SELECT FROM json_each(?)``), ``ON CONFLICT DO NOTHING``.

Between 2 and 3 Python folds the postings over the locked balances (exact: nobody else
can move a locked bucket), so a refused posting is never inserted, and the database's
trigger moves the balances by the inserted deltas (``buckets.remaining`` is never
UPDATEd by code). A bucket the batch does not know (or of another account) refuses its
postings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from openmvno import clock
from openmvno.db import UTCDateTime
from openmvno.errors import NotFound
from openmvno.ledger.models import Bucket, EntryReason
from openmvno.ledger.service import InsufficientBalance, Posting

__all__ = [
    "Applied", "BatchRace", "Status", "pg_ints", "pg_plain", "pg_texts", "post_all",
    "post_batch", "post_locked", "post_new",
]

Status = Literal["applied", "partial", "refused", "duplicate"]


@dataclass(frozen=True, slots=True)
class Applied:
    """What became of one posting: ``asked`` is its delta, ``applied`` the delta that
    took effect now (signed like the delta; 0 when refused or a duplicate)."""

    key: str
    bucket_id: uuid.UUID
    asked: int
    applied: int
    status: Status


class BatchRace(RuntimeError):
    """A key of the batch was inserted by a concurrent transaction for another bucket
    between the check and the insert; the transaction must be rolled back and retried
    (a retry sees the key as a duplicate)."""



_PG_LOCK = (
    "SELECT id, account_id, remaining, reserved FROM buckets "
    "WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE"
)
_PG_KEYS = "SELECT idempotency_key FROM balance_entries WHERE idempotency_key = ANY($1::text[])"
_PG_INSERT = (
    "WITH ins AS (INSERT INTO balance_entries "
    "(bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at) "
    "SELECT b, a, d, r, k, o, m, $8::timestamptz FROM unnest("
    "$1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::uuid[], $7::text[]"
    ") AS t(b, a, d, r, k, o, m) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)
_SQLITE_LOCK = (
    "SELECT id, account_id, remaining, reserved FROM buckets "
    "WHERE id IN (SELECT value FROM json_each(?))"
)
_SQLITE_KEYS = (
    "SELECT idempotency_key FROM balance_entries "
    "WHERE idempotency_key IN (SELECT value FROM json_each(?))"
)
_SQLITE_INSERT = (
    "INSERT INTO balance_entries "
    "(bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
    "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
    "json_extract(value, '$[5]'), json_extract(value, '$[6]'), ? "
    "FROM json_each(?) WHERE true ON CONFLICT (idempotency_key) DO NOTHING"
)


_PG_INSERT_LOCKED = (
    "WITH ins AS (INSERT INTO balance_entries "
    "(bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at) "
    "SELECT b, a, d, $4::text, k, NULL, $6::text, $7::timestamptz FROM unnest("
    "$1::text::uuid[], $2::text::uuid[], $3::text::bigint[], $5::text::text[]) AS t(b, a, d, k) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)
_SQLITE_INSERT_LOCKED = (
    "INSERT INTO balance_entries "
    "(bucket_id, account_id, delta, reason, idempotency_key, order_id, memo, created_at) "
    "VALUES (?, ?, ?, ?, ?, NULL, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
)


@dataclass(slots=True)
class _Balance:
    account_id: uuid.UUID
    remaining: int
    reserved: int
    moved: bool = False


_Row = tuple[uuid.UUID, uuid.UUID, int, str, str, uuid.UUID | None, str]
"""bucket, account, delta, reason (as stored), key, order, memo."""

_TIME: dict[str, Callable[[Any], Any] | None] = {}


def _time_binder(dialect: Dialect) -> Callable[[Any], Any] | None:
    """How ``created_at`` is bound on this dialect (SQLAlchemy's own processor, once)."""
    if dialect.name not in _TIME:
        _TIME[dialect.name] = UTCDateTime().bind_processor(dialect)
    return _TIME[dialect.name]


async def _lock(conn: AsyncConnection, bucket_ids: list[uuid.UUID]) -> dict[uuid.UUID, _Balance]:
    rows: Any
    if conn.dialect.name == "postgresql":
        rows = (await conn.exec_driver_sql(_PG_LOCK, (bucket_ids,))).all()
        # asyncpg's own UUID type compares slowly with uuid.UUID: key by plain UUIDs.
        return {
            uuid.UUID(bytes=r[0].bytes): _Balance(uuid.UUID(bytes=r[1].bytes), int(r[2]), int(r[3]))
            for r in rows
        }
    ids = json.dumps([b.hex for b in bucket_ids])
    rows = (await conn.exec_driver_sql(_SQLITE_LOCK, (ids,))).all()
    return {uuid.UUID(r[0]): _Balance(uuid.UUID(r[1]), int(r[2]), int(r[3])) for r in rows}


async def _posted(conn: AsyncConnection, keys: list[str]) -> set[str]:
    if conn.dialect.name == "postgresql":
        rows = (await conn.exec_driver_sql(_PG_KEYS, (keys,))).all()
    else:
        rows = (await conn.exec_driver_sql(_SQLITE_KEYS, (json.dumps(keys),))).all()
    return {r[0] for r in rows}


async def _insert(conn: AsyncConnection, rows: list[_Row], now: datetime) -> int:
    bind_time = _time_binder(conn.dialect)
    at = bind_time(now) if bind_time else now
    if conn.dialect.name == "postgresql":
        columns = tuple(map(list, zip(*rows, strict=True)))
        result = await conn.exec_driver_sql(_PG_INSERT, (*columns, at))
        return int(result.scalar_one())
    payload = json.dumps(
        [[b.hex, a.hex, d, r, k, o.hex if o else None, m] for b, a, d, r, k, o, m in rows]
    )
    result = await conn.exec_driver_sql(_SQLITE_INSERT, (at, payload))
    return int(result.rowcount)


def _as_int(value: uuid.UUID) -> int:
    return value.int


def _row(p: Posting, delta: int) -> _Row:
    return (p.bucket_id, p.account_id, delta, p.reason.name, p.key, p.order_id, p.memo[:200])


async def _prepare(
    session: AsyncSession, postings: Sequence[Posting]
) -> tuple[AsyncConnection, dict[uuid.UUID, _Balance], set[str]]:
    await session.flush()  # the driver statements below do not autoflush pending ORM rows
    conn = await session.connection()
    balances = await _lock(conn, sorted({p.bucket_id for p in postings}, key=_as_int))
    posted = await _posted(conn, list({p.key: None for p in postings}))
    return conn, balances, posted


async def _write(
    session: AsyncSession,
    conn: AsyncConnection,
    rows: list[_Row],
    balances: dict[uuid.UUID, _Balance],
) -> None:
    if not rows:
        return
    inserted = await _insert(conn, rows, clock.now())
    if inserted != len(rows):
        raise BatchRace(f"{len(rows) - inserted} key(s) of the batch were posted meanwhile")
    # Loaded Bucket objects follow (the identity map is small; the batch may be large).
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Bucket):
            identity = inspect(obj).identity  # never loads an expired attribute
            balance = balances.get(identity[0]) if identity else None
            if balance is not None and balance.moved:
                set_committed_value(obj, "remaining", balance.remaining)


async def post_batch(
    session: AsyncSession, postings: Sequence[Posting], *, partial: bool = False
) -> list[Applied]:
    """Post ``postings`` record by record; one :class:`Applied` per posting, in input
    order (see the module doc). Three statements whatever the batch's size; the caller's
    transaction commits (a refused posting leaves nothing behind, so there is nothing
    to undo)."""
    if not postings:
        return []
    conn, balances, posted = await _prepare(session, postings)
    out: list[Applied] = []
    rows: list[_Row] = []
    for p in postings:
        if p.key in posted:
            out.append(Applied(p.key, p.bucket_id, p.delta, 0, "duplicate"))
            continue
        balance = balances.get(p.bucket_id)
        if balance is None or balance.account_id != p.account_id:
            out.append(Applied(p.key, p.bucket_id, p.delta, 0, "refused"))
            continue
        delta, status = p.delta, "applied"
        room = balance.remaining - balance.reserved
        if delta < 0 and -delta > room:
            if not partial or room <= 0:
                out.append(Applied(p.key, p.bucket_id, p.delta, 0, "refused"))
                continue
            delta, status = -room, "partial"
        balance.remaining += delta
        balance.moved = True
        posted.add(p.key)
        rows.append(_row(p, delta))
        out.append(Applied(p.key, p.bucket_id, p.delta, delta, status))  # type: ignore[arg-type]
    await _write(session, conn, rows, balances)
    return out


async def post_all(session: AsyncSession, postings: Sequence[Posting]) -> int:
    """All or nothing (``ledger.service.post_many``): keys posted before or repeated
    count once; the summed new deltas of every bucket are checked against its locked
    balance first, and if one would go below its reserved amount nothing is written and
    :class:`InsufficientBalance` is raised (:class:`NotFound` for an unknown bucket).
    Returns how many entries were new."""
    if not postings:
        return 0
    conn, balances, posted = await _prepare(session, postings)
    rows: list[_Row] = []
    for p in postings:
        if p.key in posted:
            continue
        posted.add(p.key)
        balance = balances.get(p.bucket_id)
        if balance is None or balance.account_id != p.account_id:
            raise NotFound("balance_not_found", "There is no such balance.")
        balance.remaining += p.delta
        balance.moved = True
        rows.append(_row(p, p.delta))
    # Credits first: on SQLite the row trigger applies the entries one by one, and no
    # intermediate balance may dip below the final one.
    rows.sort(key=lambda r: -r[2])
    for bucket_id, balance in sorted(balances.items(), key=lambda kv: kv[0].int):
        if balance.moved and balance.remaining < balance.reserved:
            raise InsufficientBalance(bucket_id=bucket_id)
    await _write(session, conn, rows, balances)
    return len(rows)


async def post_new(session: AsyncSession, postings: Sequence[Posting]) -> None:
    """Credits to buckets created in the caller's transaction under keys made in it (a
    renewal's grants: new buckets, keys of a new order): nobody else can see either, so
    there is nothing to lock or look up; the entries go in with one insert (the trigger
    moves the balances as always). A key found taken raises :class:`BatchRace`."""
    if not postings:
        return
    if any(p.delta < 0 for p in postings):
        raise ValueError("post_new only credits new buckets")
    await session.flush()
    conn = await session.connection()
    rows = [_row(p, p.delta) for p in postings]
    inserted = await _insert(conn, rows, clock.now())
    if inserted != len(rows):
        raise BatchRace(f"{len(rows) - inserted} key(s) of the batch were posted meanwhile")


async def post_locked(
    session: AsyncSession,
    *,
    bucket_ids: Sequence[uuid.UUID | str],
    account_ids: Sequence[uuid.UUID | str],
    deltas: Sequence[int],
    keys: Sequence[str],
    reason: EntryReason,
    memo: str = "",
) -> None:
    """One entry per bucket (columns side by side) on buckets the caller has locked
    ``FOR UPDATE`` in this transaction and folded its changes over (a usage batch rates
    against the balances it locked), under keys made in this transaction (``usage:<new
    batch id>:<bucket>``): nothing to lock again or look up, so this is one statement,
    the insert. The database still keeps the books: the trigger moves the balances, a
    bucket that would go below zero or its reserved amount, or an entry naming a bucket
    of another account, fails the statement (nothing of the batch is written). A key
    found taken raises :class:`BatchRace`. Ids may be ``uuid.UUID`` or their text."""
    if not bucket_ids:
        return
    if not len(bucket_ids) == len(account_ids) == len(deltas) == len(keys):
        raise ValueError("post_locked: columns of different lengths")
    await session.flush()
    conn = await session.connection()
    now = clock.now()
    bind_time = _time_binder(conn.dialect)
    at = bind_time(now) if bind_time else now
    if conn.dialect.name == "postgresql":
        result = await conn.exec_driver_sql(_PG_INSERT_LOCKED, (
            pg_plain([str(b) for b in bucket_ids]), pg_plain([str(a) for a in account_ids]),
            pg_ints(deltas), reason.name, pg_texts(keys), memo[:200], at,
        ))
        inserted = int(result.scalar_one())
    else:
        result = await conn.exec_driver_sql(_SQLITE_INSERT_LOCKED, [
            (_hex(b), _hex(a), d, reason.name, k, memo[:200], at)
            for b, a, d, k in zip(bucket_ids, account_ids, deltas, keys, strict=True)
        ])
        inserted = int(result.rowcount)
    if inserted != len(keys):
        raise BatchRace(f"{len(keys) - inserted} key(s) of the batch were posted meanwhile")
    # Loaded Bucket objects follow (the identity map is small; the batch may be large).
    loaded = [
        obj for obj in session.identity_map.values()
        if isinstance(obj, Bucket) and "remaining" in obj.__dict__
    ]
    if loaded:
        moved = {_hex(b): d for b, d in zip(bucket_ids, deltas, strict=True)}
        for obj in loaded:
            identity = inspect(obj).identity
            delta = moved.get(identity[0].hex) if identity else None
            if delta:
                set_committed_value(obj, "remaining", obj.__dict__["remaining"] + delta)


def pg_plain(values: Sequence[str]) -> str:
    """A PostgreSQL array literal (``{a,b,…}``) of values that need no quoting (UUIDs as
    text, numbers, ISO timestamps, ``NULL``), sent as text and cast in SQL
    (``$1::text::uuid[]``): asyncpg's own array encoder checks every element against
    abstract base classes, which for arrays of 10,000 costs more than the statement."""
    return "{" + ",".join(values) + "}"


def pg_ints(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers (see :func:`pg_plain`)."""
    return "{" + ",".join(map(str, values)) + "}"


def pg_texts(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of strings, each quoted (``\\`` and ``"`` escaped; see
    :func:`pg_plain`)."""
    if not values:
        return "{}"
    if any('"' in v or "\\" in v for v in values):
        values = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(values) + '"}'


def _hex(value: uuid.UUID | str) -> str:
    return value.hex if isinstance(value, uuid.UUID) else value.replace("-", "")
