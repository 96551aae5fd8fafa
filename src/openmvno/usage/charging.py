"""Charging a batch of usage records in a fixed number of statements, whatever its size.

For a batch of up to ``usage_max_batch`` (10,000) records, in the caller's transaction:

1. one SELECT of the lines the records name (by MSISDN or ICCID) with their plans;
2. one SELECT of those lines' buckets and their owners' wallets (run locking: and one
   more that locks them by id);
3. one SELECT of the records this peer already sent (``duplicate``; not on the optimistic
   run below, where the insert of step 5 tells);
4. rating in Python (:mod:`openmvno.usage.rating`; no ORM object per record);
5. one INSERT of the records with their outcome, ``ON CONFLICT (peer_id, record_id) DO
   NOTHING RETURNING`` (PostgreSQL ``unnest`` arrays, SQLite ``executemany``);
6. one ledger batch: one entry per bucket per batch (``usage:<batch>:<bucket>``), the
   wallet included;
7. thresholds and barring: a few set-based statements for the lines that crossed one.

On PostgreSQL the batch first runs *optimistically* inside a savepoint: step 2 reads
without locking, and only after step 5 one more SELECT locks the buckets ``FOR NO KEY
UPDATE`` in id order and checks that what other transactions changed meanwhile leaves
every outcome as rated (:func:`_lock_and_check`). Two batches in flight then overlap in
everything but the short locked tail (lock, ledger, thresholds, commit). When the check
fails, or a record was stored meanwhile by a replay of the same batch, the savepoint is
rolled back and the batch runs again locking in step 2 (concurrent batches on one line
queue there and never deadlock; the look-up of step 3 then sees a replay whole). SQLite
has one writer: it always locks first.

Every record is answered, in input order: ``charged`` (what came from which bucket and
from the wallet), ``partial``, ``blocked``, ``duplicate``, ``unknown_line``,
``line_not_active`` or ``out_of_order``. Balances never go below zero.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from openmvno import clock, formatting
from openmvno.config import Settings
from openmvno.db import Base
from openmvno.errors import Conflict
from openmvno.ledger.batch import pg_ints as _pg_ints
from openmvno.ledger.batch import pg_plain as _pg_plain
from openmvno.ledger.batch import pg_texts as _pg_texts
from openmvno.ledger.batch import post_batch, post_locked
from openmvno.ledger.models import Bucket, EntryReason
from openmvno.ledger.service import Posting
from openmvno.usage import rating, thresholds
from openmvno.usage.models import UsageRecord
from openmvno.usage.rating import BucketState, PlanRules, Rated, Wallet

RECORDS: Table = Base.metadata.tables[UsageRecord.__tablename__]
BUCKETS: Table = Base.metadata.tables[Bucket.__tablename__]


class RecordIn(TypedDict):
    """One usage record as a peer sent it, validated at the edge (the API's JSON shape: a
    plain dict per record, no object built per record). Exactly one of ``msisdn`` and
    ``iccid``; ``type`` is data, voice or sms; ``started_at`` is aware."""

    record_id: str
    type: str
    units: int
    started_at: datetime
    msisdn: NotRequired[str | None]
    iccid: NotRequired[str | None]
    zone: NotRequired[str | None]
    rating_group: NotRequired[int | None]


@dataclass(slots=True)
class LineInfo:
    """A line of the batch. Ids here (the line's, its owner's, its buckets') are UUIDs in
    their canonical text form."""

    id: str
    account_id: str
    msisdn: str
    iccid: str
    state: str
    expires_at: datetime | None
    plan: PlanRules | None
    buckets: dict[str, list[BucketState]]
    period_start: datetime | None = None
    wallet: Wallet | None = None
    plan_name: dict[str, str] | None = None


@dataclass(slots=True)
class BatchResult:
    """The answers (one dict per record, in input order) and counts per status."""

    batch_id: uuid.UUID
    results: list[dict[str, Any]]
    counts: dict[str, int]


# --- statements, written once per dialect and sent straight to the driver --------------
#
# Ids come back as text (PostgreSQL ``::text``, SQLite's stored hex made canonical once per
# row): the answer needs them as text anyway, and strings hash and compare far faster than
# UUID objects in the dicts below. JSON columns come back as text, parsed once per plan.

_PG_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"
"""Every statement of a batch is planned once per connection, not for its arrays: a custom
plan folds the array literals while planning and parses them again when it runs (~50 ms
of a batch of 10,000), and estimates thousands of keys well enough to choose a (parallel)
scan of the whole table. Each look-up below joins its keys' array to an index instead
(``unnest($1) JOIN … ON``), which a generic plan runs as one index probe per key;
``= ANY($1)`` under a generic plan would test the whole array against every row."""
_PG_LINES = (
    "SELECT l.id::text, l.account_id::text, l.msisdn, l.iccid, l.state, l.expires_at,"
    " l.plan_id::text FROM unnest($1::text::varchar[]) AS k(v) JOIN lines l ON l.msisdn = k.v"
    " UNION ALL"
    " SELECT l.id::text, l.account_id::text, l.msisdn, l.iccid, l.state, l.expires_at,"
    " l.plan_id::text FROM unnest($2::text::varchar[]) AS k(v) JOIN lines l ON l.iccid = k.v"
)
"""A line named by MSISDN in one record and by ICCID in another comes back twice."""
_PG_BUCKET_COLUMNS = (
    "{b}.id::text, {b}.line_id::text, {b}.account_id::text, {b}.kind, {b}.currency,"
    " {b}.remaining - {b}.reserved, {b}.initial, {b}.valid_from, {b}.valid_until,"
    " {b}.priority, {b}.created_at, {b}.plan_id::text"
)
"""What rating reads of a bucket, for the alias ``{b}``."""
_PG_LINE_BUCKETS = (
    " FROM unnest($1::text::uuid[]) AS k(id) JOIN buckets b ON b.line_id = k.id"
    " WHERE b.kind <> 'money' AND (b.valid_until IS NULL OR b.valid_until > $3::timestamptz)"
)
_PG_WALLETS = (
    " FROM unnest($2::text::uuid[]) AS k(id) JOIN buckets b ON b.account_id = k.id"
    " WHERE b.kind = 'money'"
)
_PG_READ = (
    f"SELECT {_PG_BUCKET_COLUMNS.format(b='b')}{_PG_LINE_BUCKETS}"
    f" UNION ALL SELECT {_PG_BUCKET_COLUMNS.format(b='b')}{_PG_WALLETS}"
)
"""The lines' buckets valid at the earliest record and their owners' wallets, unlocked."""
_PG_BY_ID_LOCKED = (
    " FROM unnest($1::text::uuid[]) AS k(id) JOIN buckets b ON b.id = k.id"
    " ORDER BY b.id FOR NO KEY UPDATE OF b"
)
_PG_LOCKED = f"SELECT {_PG_BUCKET_COLUMNS.format(b='b')}{_PG_BY_ID_LOCKED}"
"""The buckets :data:`_PG_READ` found, locked in id order, as they are now (the locking
run). Locked by id alone, not in the read's own statement: a row the lock waited for is
rechecked against the rest of its statement once the holder commits, and over the read's
UNION ALL PostgreSQL 15 dropped such a row under some plans (nested loops over scans lost
the wallet, and the records it paid for were answered ``blocked``)."""
_PG_PLANS = (
    "SELECT p.id::text, p.kind, p.overage_rule, p.overage_rates::text, p.roaming_rates::text,"
    " p.roaming_zones::text, p.currency, p.name_zh, p.name_en"
    " FROM unnest($1::text::uuid[]) AS k(id) JOIN plans p ON p.id = k.id"
)
_PG_LOCK = f"SELECT b.id::text, b.remaining - b.reserved{_PG_BY_ID_LOCKED}"
"""The optimistic run's lock: what is available in each bucket it read."""
_PG_SAVEPOINT = "SAVEPOINT usage_batch"
_PG_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT usage_batch"
_PG_RELEASE_SAVEPOINT = "RELEASE SAVEPOINT usage_batch"
_PG_SEEN = (
    "SELECT u.record_id FROM unnest($2::text::varchar[]) AS k(id)"
    " JOIN usage_records u ON u.peer_id = $1::uuid AND u.record_id = k.id"
)
_PG_INSERT = (
    "WITH ins AS (INSERT INTO usage_records (peer_id, record_id, batch_id, line_id,"
    " account_id, kind, units, started_at, day, zone, rating_group, status, charged_units,"
    " wallet_minor, received_at)"
    " SELECT $1::uuid, r.record_id, $2::uuid, r.line_id, r.account_id, r.kind, r.units,"
    " r.started_at, (r.started_at AT TIME ZONE $3::text)::date, r.zone, r.rating_group,"
    " r.status, r.charged_units, r.wallet_minor, $4::timestamptz"
    " FROM unnest($5::text::varchar[], $6::text::uuid[], $7::text::uuid[],"
    " $8::text::varchar[], $9::text::bigint[], $10::text::timestamptz[],"
    " $11::text::varchar[], $12::text::integer[], $13::text::varchar[],"
    " $14::text::bigint[], $15::text::bigint[])"
    " AS r(record_id, line_id, account_id, kind, units, started_at, zone, rating_group,"
    " status, charged_units, wallet_minor)"
    " ON CONFLICT (peer_id, record_id) DO NOTHING RETURNING 1) SELECT count(*) FROM ins"
)
"""The day of ``started_at`` in the operator's time zone is worked out by the database.

The insert's arrays go to PostgreSQL as the text of an array literal (``{a,b,…}``, cast
in SQL): the driver's own array encoder checks every element against abstract base
classes, which for a dozen arrays of 10,000 cost more than the rest of the statement.
(Not for the look-ups' ``= ANY($1)``: an array cast from text is not known when the
statement is planned, and the planner then scans the table.)"""

_SQLITE_LINES = (
    "SELECT l.id, l.account_id, l.msisdn, l.iccid, l.state, l.expires_at, l.plan_id"
    " FROM lines l WHERE l.msisdn IN (SELECT value FROM json_each(?))"
    " OR l.iccid IN (SELECT value FROM json_each(?))"
)
_SQLITE_BUCKETS = (
    "SELECT b.id, b.line_id, b.account_id, b.kind, b.currency, b.remaining - b.reserved,"
    " b.initial, b.valid_from, b.valid_until, b.priority, b.created_at, b.plan_id"
    " FROM buckets b"
    " WHERE (b.line_id IN (SELECT value FROM json_each(?)) AND b.kind <> 'money'"
    "        AND (b.valid_until IS NULL OR b.valid_until > ?))"
    "    OR (b.kind = 'money' AND b.account_id IN (SELECT value FROM json_each(?)))"
    " ORDER BY b.id"
)
_SQLITE_PLANS = (
    "SELECT id, kind, overage_rule, overage_rates, roaming_rates, roaming_zones, currency,"
    " name_zh, name_en FROM plans WHERE id IN (SELECT value FROM json_each(?))"
)
_SQLITE_SEEN = (
    "SELECT record_id FROM usage_records"
    " WHERE peer_id = ? AND record_id IN (SELECT value FROM json_each(?))"
)
SQLITE_INSERT = (
    "INSERT INTO usage_records (peer_id, record_id, batch_id, line_id, account_id, kind, units,"
    " started_at, day, zone, rating_group, status, charged_units, wallet_minor, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (peer_id, record_id) DO NOTHING"
)
"""SQLite: one prepared statement run over the batch in C (``executemany``); its row count
says how many were new."""


class _Driver:
    """The session's connection, statements sent as plain SQL. On PostgreSQL, inside the
    transaction SQLAlchemy began and while nobody listens to the engine's statement events,
    straight to asyncpg (its prepared-statement cache keeps the plan; rows come back as its
    C records); otherwise, and on SQLite, through ``exec_driver_sql``, so a test counting
    statements sees every one."""

    def __init__(self, conn: AsyncConnection, raw: Any) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.asyncpg: Any = raw.driver_connection if self.pg else None

    def _direct(self) -> bool:
        if self.asyncpg is None or not self.asyncpg.is_in_transaction():
            return False
        sync = self.conn.sync_connection
        if sync is None:
            return False
        events = sync.dispatch  # the connection's listeners, the engine's included
        return not (events.before_cursor_execute or events.after_cursor_execute
                    or events.before_execute or events.after_execute)

    async def rows(self, sql: str, *args: Any) -> Sequence[Any]:
        if self._direct():
            return await self.asyncpg.fetch(sql, *args)  # type: ignore[no-any-return]
        return (await self.conn.exec_driver_sql(sql, args)).all()

    async def run(self, sql: str) -> None:
        """A statement without parameters or rows (``SET LOCAL …``)."""
        if self._direct():
            await self.asyncpg.execute(sql)
        else:
            await self.conn.exec_driver_sql(sql)

    async def value(self, sql: str, *args: Any) -> Any:
        if self._direct():
            return await self.asyncpg.fetchval(sql, *args)
        return (await self.conn.exec_driver_sql(sql, args)).scalar_one()


# --- SQLite storage forms (what SQLAlchemy's types write there) -------------------------


@lru_cache(maxsize=4096)
def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@lru_cache(maxsize=65536)
def _parse_stored(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is UTC else value.astimezone(UTC)
    return _parse_stored(str(value))


def _dashed(value: str) -> str:
    """SQLite's stored UUID (32 hex digits) in its canonical text form."""
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _hex(value: str) -> str:
    return value.replace("-", "")


@lru_cache(maxsize=1024)
def _json_text(value: str) -> Any:
    return json.loads(value)


def _json(value: Any) -> Any:
    """A JSON column's value (as text; the same few plans' texts repeat, each parsed once)."""
    return _json_text(value) if isinstance(value, str) else value


@dataclass(slots=True)
class _Plan:
    rules: PlanRules | None
    addon: bool
    zones: frozenset[str]
    name: dict[str, str]


# --- the batch ---------------------------------------------------------------------------


class _Raced(Exception):
    """The optimistic attempt met a concurrent change it cannot prove harmless."""


async def charge_batch(
    session: AsyncSession,
    settings: Settings,
    *,
    peer_id: uuid.UUID,
    records: Sequence[RecordIn],
) -> BatchResult:
    """Charge ``records`` from ``peer_id`` in the caller's transaction (see the module)."""
    now = clock.now()
    batch_id = uuid.uuid4()
    await session.flush()  # the driver statements below do not autoflush pending ORM rows
    conn = await session.connection()
    db = _Driver(conn, await conn.get_raw_connection())
    if not db.pg:
        return await _attempt(session, db, settings, peer_id, records, now, batch_id,
                              optimistic=False)
    try:
        await db.run(_PG_SAVEPOINT)
        try:
            result = await _attempt(session, db, settings, peer_id, records, now, batch_id,
                                    optimistic=True)
        except _Raced:
            await db.run(_PG_ROLLBACK_TO_SAVEPOINT)
            return await _attempt(session, db, settings, peer_id, records, now, batch_id,
                                  optimistic=False)
        await db.run(_PG_RELEASE_SAVEPOINT)
        return result
    except Exception as exc:  # SQLAlchemy's DBAPIError, or asyncpg's own when sent direct
        if _sqlstate(exc) == "40P01":
            # Only a batch replayed while its first run was falling back to the locked
            # path can meet its twin this way; the peer's resend is answered "duplicate".
            raise _raced() from None
        raise


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _raced() -> Conflict:
    return Conflict(
        "usage_batch_raced",
        "Some of these records arrived twice at the same moment; send the batch again.",
    )


async def _attempt(
    session: AsyncSession,
    db: _Driver,
    settings: Settings,
    peer_id: uuid.UUID,
    records: Sequence[RecordIn],
    now: datetime,
    batch_id: uuid.UUID,
    *,
    optimistic: bool,
) -> BatchResult:
    """One run of the batch. ``optimistic`` (PostgreSQL): read the balances without
    locking them, rate, store the records, and only then lock the buckets and check that
    what changed meanwhile leaves every outcome as it was (:func:`_lock_and_check`);
    otherwise (and on SQLite) lock first."""
    home = settings.usage_home_zone
    pg = db.pg
    if pg:
        await db.run(_PG_GENERIC_PLANS)
    n = len(records)
    results: list[dict[str, Any] | None] = [None] * n

    # Repeated record ids within the batch: the first counts.
    first: dict[str, int] = {}
    msisdn_set: set[str] = set()
    iccid_set: set[str] = set()
    for i, r in enumerate(records):
        rid = r["record_id"]
        if rid in first:
            results[i] = {"record_id": rid, "status": rating.DUPLICATE}
            continue
        first[rid] = i
        m = r.get("msisdn")
        if m:
            msisdn_set.add(m)
        else:
            c = r.get("iccid")
            if c:
                iccid_set.add(c)

    # 1. the lines
    lines_by_msisdn: dict[str, LineInfo] = {}
    lines_by_iccid: dict[str, LineInfo] = {}
    lines: dict[str, LineInfo] = {}
    line_plan: dict[str, str] = {}
    if msisdn_set or iccid_set:
        msisdns, iccids = sorted(msisdn_set), sorted(iccid_set)
        found = await (
            db.rows(_PG_LINES, _pg_texts(msisdns), _pg_texts(iccids)) if pg
            else db.rows(_SQLITE_LINES, json.dumps(msisdns), json.dumps(iccids))
        )
        for row in found:
            if row[1] is None:
                continue  # stock nobody owns: nobody to charge
            line_id = row[0] if pg else _dashed(row[0])
            if line_id in lines:
                continue  # named by MSISDN and by ICCID: found twice (see _PG_LINES)
            loaded = LineInfo(
                id=line_id, account_id=row[1] if pg else _dashed(row[1]), msisdn=row[2],
                iccid=row[3], state=str(row[4]), expires_at=_parse_time(row[5]),
                plan=None, buckets={"data": [], "voice": [], "sms": []},
            )
            if row[6] is not None:
                line_plan[line_id] = row[6] if pg else _dashed(row[6])
            lines[line_id] = loaded
            lines_by_msisdn[loaded.msisdn] = loaded
            lines_by_iccid[loaded.iccid] = loaded

    # Which line each record names.
    line_of: list[LineInfo | None] = [None] * n
    earliest = now
    fresh_ids: list[str] = []
    for i, r in enumerate(records):
        if results[i] is not None:
            continue
        msisdn = r.get("msisdn")
        named = (
            lines_by_msisdn.get(msisdn) if msisdn else lines_by_iccid.get(r.get("iccid") or "")
        )
        if named is None:
            results[i] = {"record_id": r["record_id"], "status": rating.UNKNOWN_LINE}
            continue
        line_of[i] = named
        fresh_ids.append(r["record_id"])
        started = r["started_at"]
        if started < earliest:
            earliest = started

    # 2. their buckets and their owners' wallets (run locking: then locked in id order); plans
    before: dict[str, int] = {}
    initial: dict[str, int] = {}
    bucket_line: dict[str, LineInfo] = {}
    wallets: dict[tuple[str, str], Wallet] = {}
    wallet_account: dict[str, str] = {}
    bucket_plan: dict[str, dict[str, str]] = {}
    bucket_kind: dict[str, str] = {}
    states: dict[str, BucketState] = {}
    if lines:
        line_ids = list(lines)
        account_ids = sorted({info.account_id for info in lines.values()})
        if pg:
            bucket_rows = await db.rows(_PG_READ, _pg_plain(line_ids), _pg_plain(account_ids),
                                        earliest)
            if not optimistic and bucket_rows:
                found_ids = sorted(row[0] for row in bucket_rows)
                bucket_rows = await db.rows(_PG_LOCKED, _pg_plain(found_ids))
        else:
            bucket_rows = await db.rows(
                _SQLITE_BUCKETS, json.dumps([_hex(i) for i in line_ids]), _sqlite_time(earliest),
                json.dumps([_hex(a) for a in account_ids]),
            )
        plan_ids = set(line_plan.values())
        for row in bucket_rows:
            if row[11] is not None:
                plan_ids.add(row[11] if pg else _dashed(row[11]))
        plans = await _plans(db, sorted(plan_ids))
        for line_id, plan_id in line_plan.items():
            known = plans.get(plan_id)
            if known is not None:
                info = lines[line_id]
                info.plan = known.rules
                info.plan_name = known.name
        by_line = lines.get
        for row in bucket_rows:
            bucket_id = row[0] if pg else _dashed(row[0])
            available = int(row[5])
            before[bucket_id] = available
            kind = row[3]
            if kind == "money":
                owner = row[2] if pg else _dashed(row[2])
                w = Wallet(bucket_id, available, row[4])
                wallets[(owner, row[4])] = w
                wallet_account[bucket_id] = owner
                continue
            info_ = by_line(row[1] if pg else _dashed(row[1]))
            assert info_ is not None
            plan_ref: str | None = row[11] if pg or row[11] is None else _dashed(row[11])
            bplan = plans.get(plan_ref) if plan_ref else None
            addon = bplan.addon if bplan else False
            zones = bplan.zones if bplan else frozenset()
            valid_from = _parse_time(row[7])
            assert valid_from is not None
            state = BucketState(
                id=bucket_id, kind=kind, remaining=available,
                initial=int(row[6]), valid_from=valid_from, valid_until=_parse_time(row[8]),
                priority=int(row[9]), addon=addon, zones=zones,
                home=not rating.is_roaming_pack(addon, zones, home),
                created_at=_parse_time(row[10]),
            )
            initial[bucket_id] = state.initial
            states[bucket_id] = state
            bucket_kind[bucket_id] = kind
            if bplan is not None:
                bucket_plan[bucket_id] = bplan.name
            bucket_line[bucket_id] = info_
            info_.buckets[kind].append(state)
            if not addon and valid_from <= now and (
                info_.period_start is None or valid_from > info_.period_start
            ):
                info_.period_start = valid_from
        for info in lines.values():
            for kind in rating.KINDS:
                if len(info.buckets[kind]) > 1:
                    info.buckets[kind] = rating.order(info.buckets[kind])
            if info.plan is not None:
                info.wallet = wallets.get((info.account_id, info.plan.currency))

    # 3. what this peer sent before. Run optimistically, the records' insert answers it:
    # one stored before makes the insert's count fall short, and the batch runs again
    # locking first, with this look-up (a replay costs two runs; a fresh batch no look-up).
    if fresh_ids and not optimistic:
        seen_rows = await (
            db.rows(_PG_SEEN, peer_id, _pg_texts(fresh_ids)) if pg
            else db.rows(_SQLITE_SEEN, peer_id.hex, json.dumps(fresh_ids))
        )
        if seen_rows:
            seen = {row[0] for row in seen_rows}
            for i, named in enumerate(line_of):
                if named is not None and records[i]["record_id"] in seen:
                    results[i] = {"record_id": records[i]["record_id"], "status": rating.DUPLICATE}
                    line_of[i] = None

    # 4. rating, per line in started_at order
    future = now + timedelta(seconds=settings.usage_future_skew_seconds)
    order = sorted(
        (i for i, info in enumerate(line_of) if info is not None),
        key=lambda i: records[i]["started_at"],
    )
    rated: dict[int, Rated] = {}
    statuses: dict[int, str] = {}
    refused_data: set[str] = set()
    touched: dict[str, set[str]] = defaultdict(set)
    overage_lines: dict[str, LineInfo] = {}
    deltas: dict[str, int] = defaultdict(int)
    short_wallets: set[str] = set()
    rate = rating.rate
    for i in order:
        r = records[i]
        named = line_of[i]
        assert named is not None
        info = named
        started = r["started_at"]
        if started > future or (info.period_start is not None and started < info.period_start):
            statuses[i] = rating.OUT_OF_ORDER
            continue
        if info.state not in _RATED_STATES or (
            info.expires_at is not None and started >= info.expires_at
        ):
            statuses[i] = rating.LINE_NOT_ACTIVE
            continue
        kind = r["type"]
        zone = r.get("zone") or home
        outcome = rate(kind, r["units"], started, zone, info.buckets[kind], info.plan,
                       info.wallet, home)
        rated[i] = outcome
        statuses[i] = outcome.status
        if outcome.taken:
            touched[info.id].add(kind)
            for bucket_id, units in outcome.taken:
                deltas[bucket_id] += units
        if outcome.overage_units and info.plan is not None and (
            zone == home or zone in info.plan.zones
        ):
            overage_lines[info.id] = info  # beyond the allowance (not roaming elsewhere)
        if outcome.status != rating.CHARGED:
            if kind == "data":
                refused_data.add(info.id)
            if info.wallet is not None and info.wallet.id is not None:
                short_wallets.add(info.wallet.id)

    # 5. the records, with their outcome
    if statuses:
        await _insert_records(db, settings, peer_id, batch_id, now, records, line_of,
                              statuses, rated, home, optimistic=optimistic)
    wallet_by_id = {w.id: w for w in wallets.values()}
    for w in wallet_by_id.values():
        assert w.id is not None
        if before[w.id] != w.remaining:
            deltas[w.id] = before[w.id] - w.remaining
    if optimistic and before:
        await _lock_and_check(db, before, deltas, states, wallet_by_id, short_wallets)

    # 6. the ledger: one entry per bucket per batch, on the buckets locked above
    moved = [(b, used) for b, used in deltas.items() if used > 0]
    if moved:
        prefix = f"usage:{batch_id.hex}:"
        moved.sort()  # in id order, as they were locked
        await post_locked(
            session,
            bucket_ids=[b for b, _ in moved],
            account_ids=[
                bucket_line[b].account_id if b in bucket_line else wallet_account[b]
                for b, _ in moved
            ],
            deltas=[-used for _, used in moved],
            keys=[prefix + _hex(b) for b, _ in moved],
            reason=EntryReason.usage,
            memo="usage",
        )

    # 7. thresholds, overage warnings and barring
    await thresholds.after_batch(
        session, settings,
        lines=lines, buckets=bucket_line, bucket_plan=bucket_plan, initial=initial,
        before=before,
        after={b: before[b] - used for b, used in deltas.items()},
        wallets=wallet_by_id, wallet_account=wallet_account,
        overage_lines=overage_lines, refused_data=refused_data, touched=touched,
        kinds=bucket_kind,
    )

    # The answers, in input order.
    counts: dict[str, int] = defaultdict(int)
    out: list[dict[str, Any]] = []
    append = out.append
    for i, r in enumerate(records):
        answer = results[i]
        if answer is None:
            status = statuses[i]
            got = rated.get(i)
            if got is None:
                answer = {"record_id": r["record_id"], "status": status}
            else:
                answer = {"record_id": r["record_id"], "status": status,
                          "charged_units": got.charged_units}
                taken = got.taken
                if taken:
                    answer["buckets"] = (
                        [{"bucket_id": taken[0][0], "units": taken[0][1]}] if len(taken) == 1
                        else [{"bucket_id": b, "units": u} for b, u in taken]
                    )
                if got.wallet_minor or got.overage_units:
                    payer = line_of[i]
                    assert payer is not None
                    assert payer.plan is not None
                    answer["wallet"] = {
                        "units": got.overage_units, "minor": got.wallet_minor,
                        "currency": payer.plan.currency,
                    }
        counts[answer["status"]] += 1
        append(answer)
    return BatchResult(batch_id, out, dict(counts))


_RATED_STATES = frozenset({"active", "grace"})


async def _plans(db: _Driver, plan_ids: list[str]) -> dict[str, _Plan]:
    if not plan_ids:
        return {}
    home_rows = await (
        db.rows(_PG_PLANS, _pg_plain(plan_ids)) if db.pg
        else db.rows(_SQLITE_PLANS, json.dumps([_hex(p) for p in plan_ids]))
    )
    out: dict[str, _Plan] = {}
    for row in home_rows:
        zones = frozenset(_json(row[5]) or ())
        rules = None
        if row[2] is not None:
            rules = PlanRules(
                charge_wallet=row[2] == "charge_wallet",
                overage_rates=_json(row[3]) or {},
                roaming_rates=_json(row[4]) or {},
                zones=zones,
                currency=row[6],
            )
        out[row[0] if db.pg else _dashed(row[0])] = _Plan(
            rules=rules, addon=row[1] == "addon", zones=zones,
            name={"zh-CN": row[7], "en": row[8]},
        )
    return out


async def _lock_and_check(
    db: _Driver,
    before: dict[str, int],
    deltas: dict[str, int],
    states: dict[str, BucketState],
    wallets: dict[str | None, Wallet],
    short_wallets: set[str],
) -> None:
    """Lock the batch's buckets (in id order) and prove the unlocked read good enough:
    every outcome must be what rating the same records against the balances now locked
    would give. That holds when each bucket that limited nothing (rating left something
    in it) still covers what the batch takes from it, and each bucket that did limit
    (rating emptied it, or found it empty) and each wallet that fell short of a record
    is exactly as read. Otherwise :class:`_Raced`: the batch runs again, locking first.
    On success ``before`` and the buckets' and wallets' ``remaining`` are the locked
    balances (before and after the batch), which the thresholds then see."""
    ids = sorted(before)
    rows = await db.rows(_PG_LOCK, _pg_plain(ids))
    actual = {row[0]: int(row[1]) for row in rows}
    if len(actual) != len(ids):
        raise _Raced
    for bucket_id, read in before.items():
        now = actual[bucket_id]
        if now == read:
            continue
        taken = deltas.get(bucket_id, 0)
        if now < taken or read == taken or bucket_id in short_wallets:
            raise _Raced
    for bucket_id, now in actual.items():
        before[bucket_id] = now
        left = now - deltas.get(bucket_id, 0)
        state = states.get(bucket_id)
        if state is not None:
            state.remaining = left
        else:
            wallet = wallets.get(bucket_id)
            if wallet is not None:
                wallet.remaining = left


async def _insert_records(
    db: _Driver, settings: Settings, peer_id: uuid.UUID, batch_id: uuid.UUID, now: datetime,
    records: Sequence[RecordIn], line_of: list[LineInfo | None], statuses: dict[int, str],
    rated: dict[int, Rated], home: str, *, optimistic: bool,
) -> None:
    record_ids: list[str] = []
    line_ids: list[str] = []
    account_ids: list[str] = []
    kinds: list[str] = []
    units: list[int] = []
    started: list[datetime] = []
    zones: list[str] = []
    groups: list[int | None] = []
    stored: list[str] = []
    charged: list[int] = []
    wallet: list[int] = []
    for i, status in statuses.items():
        r = records[i]
        info = line_of[i]
        assert info is not None
        record_ids.append(r["record_id"])
        line_ids.append(info.id)
        account_ids.append(info.account_id)
        kinds.append(r["type"])
        units.append(r["units"])
        started.append(r["started_at"])
        zones.append(r.get("zone") or home)
        groups.append(r.get("rating_group"))
        stored.append(status)
        got = rated.get(i)
        if got is None:
            charged.append(0)
            wallet.append(0)
        else:
            charged.append(got.charged_units)
            wallet.append(got.wallet_minor)
    if db.pg:
        times: dict[datetime, str] = {}
        for at in started:
            if at not in times:
                times[at] = at.isoformat()
        inserted = int(await db.value(
            _PG_INSERT, peer_id, batch_id, settings.timezone, now, _pg_texts(record_ids),
            _pg_plain(line_ids), _pg_plain(account_ids), _pg_texts(kinds), _pg_ints(units),
            _pg_plain([times[at] for at in started]), _pg_texts(zones),
            _pg_plain(["NULL" if g is None else str(g) for g in groups]),
            _pg_texts(stored), _pg_ints(charged), _pg_ints(wallet),
        ))
    else:
        tz = formatting.zone(settings.timezone)
        peer, batch, received = peer_id.hex, batch_id.hex, _sqlite_time(now)
        rows = [
            (peer, rid, batch, _hex(line), _hex(acc), kind, u, _sqlite_time(at),
             at.astimezone(tz).date().isoformat(), zone, group, status, ch, w, received)
            for rid, line, acc, kind, u, at, zone, group, status, ch, w in zip(
                record_ids, line_ids, account_ids, kinds, units, started, zones, groups,
                stored, charged, wallet, strict=True,
            )
        ]
        result = await db.conn.exec_driver_sql(SQLITE_INSERT, rows)
        inserted = result.rowcount
    if inserted != len(statuses):
        # Some of these records were stored before: run optimistically (no look-up), a
        # replay, or another batch storing them meanwhile — the batch runs again locking
        # first, and its look-up answers them. Locking first, only a peer sending one
        # record id for two different lines at once can cause it: undo all of this batch;
        # the peer's resend gets "duplicate".
        if optimistic:
            raise _Raced
        raise _raced()


async def post_postings(session: AsyncSession, postings: Sequence[Posting]) -> None:
    """The ledger's set-based path (``ledger.batch.post_batch``, contract 1), for callers
    that have not locked the buckets themselves (the bench's grants). Every posting must
    apply; if one did not, the whole batch is undone rather than answered wrongly."""
    applied = await post_batch(session, postings)
    if any(a.status != "applied" for a in applied):
        raise _raced()


__all__ = ["BatchResult", "RecordIn", "charge_batch", "post_postings"]
