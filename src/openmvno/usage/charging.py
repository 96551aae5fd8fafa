"""Charging a batch of usage records in a fixed number of statements, whatever its size.

For a batch of up to ``usage_max_batch`` (10,000) records, in the caller's transaction:

1. one SELECT of the lines the records name (by MSISDN or ICCID) with their plans;
2. one SELECT ... FOR UPDATE of those lines' buckets and their owners' wallets, in id
   order (concurrent batches on one line queue here and never deadlock; every balance
   rating reads is then exact);
3. one SELECT of the records this peer already sent (``duplicate``), after the lock, so a
   batch replayed while the first is still running is seen whole;
4. rating in Python (:mod:`openmvno.usage.rating`; no ORM object per record);
5. one INSERT of the records with their outcome, ``ON CONFLICT (peer_id, record_id) DO
   NOTHING RETURNING`` (PostgreSQL ``unnest`` arrays, SQLite ``json_each``);
6. one ledger batch: one entry per bucket per batch (``usage:<batch>:<bucket>``), the
   wallet included;
7. thresholds and barring: a few set-based statements for the lines that crossed one.

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
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock, formatting
from openmvno.config import Settings
from openmvno.db import Base
from openmvno.errors import Conflict
from openmvno.ledger.batch import post_batch
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
    id: uuid.UUID
    account_id: uuid.UUID
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


# --- statements, written once per dialect ------------------------------------------------

_PG = {
    "lines": """
SELECT l.id, l.msisdn, l.iccid, l.account_id, l.state, l.expires_at, l.plan_id,
       p.overage_rule, p.overage_rates, p.roaming_rates, p.roaming_zones, p.currency,
       p.name_zh, p.name_en
FROM lines l LEFT JOIN plans p ON p.id = l.plan_id
WHERE l.msisdn = ANY(CAST(:msisdns AS varchar[])) OR l.iccid = ANY(CAST(:iccids AS varchar[]))
""",
    "buckets": """
SELECT b.id, b.line_id, b.account_id, b.kind, b.currency,
       b.remaining - b.reserved AS available,
       b.initial, b.valid_from, b.valid_until, b.priority, b.created_at,
       p.kind AS plan_kind, p.roaming_zones, p.name_zh, p.name_en
FROM buckets b LEFT JOIN plans p ON p.id = b.plan_id
WHERE (b.line_id = ANY(CAST(:line_ids AS uuid[])) AND b.kind <> 'money'
       AND (b.valid_until IS NULL OR b.valid_until > :earliest))
   OR (b.kind = 'money' AND b.account_id = ANY(CAST(:account_ids AS uuid[])))
ORDER BY b.id
FOR UPDATE OF b
""",
    "seen": """
SELECT record_id FROM usage_records
WHERE peer_id = :peer_id AND record_id = ANY(CAST(:record_ids AS varchar[]))
""",
    "insert": """
INSERT INTO usage_records (peer_id, record_id, batch_id, line_id, account_id, kind, units,
    started_at, day, zone, rating_group, status, charged_units, wallet_minor, received_at)
SELECT CAST(:peer_id AS uuid), r.record_id, CAST(:batch_id AS uuid), r.line_id,
       r.account_id, r.kind, r.units,
       r.started_at, r.day, r.zone, r.rating_group, r.status, r.charged_units, r.wallet_minor,
       CAST(:now AS timestamptz)
FROM unnest(CAST(:record_ids AS varchar[]), CAST(:line_ids AS uuid[]),
            CAST(:account_ids AS uuid[]), CAST(:kinds AS varchar[]), CAST(:units AS bigint[]),
            CAST(:started AS timestamptz[]), CAST(:days AS date[]), CAST(:zones AS varchar[]),
            CAST(:groups AS integer[]), CAST(:statuses AS varchar[]),
            CAST(:charged AS bigint[]), CAST(:wallet AS bigint[]))
     AS r(record_id, line_id, account_id, kind, units, started_at, day, zone, rating_group,
          status, charged_units, wallet_minor)
ON CONFLICT (peer_id, record_id) DO NOTHING
RETURNING record_id
""",
}

_SQLITE = {
    "lines": """
SELECT l.id, l.msisdn, l.iccid, l.account_id, l.state, l.expires_at, l.plan_id,
       p.overage_rule, p.overage_rates, p.roaming_rates, p.roaming_zones, p.currency,
       p.name_zh, p.name_en
FROM lines l LEFT JOIN plans p ON p.id = l.plan_id
WHERE l.msisdn IN (SELECT value FROM json_each(:msisdns))
   OR l.iccid IN (SELECT value FROM json_each(:iccids))
""",
    "buckets": """
SELECT b.id, b.line_id, b.account_id, b.kind, b.currency,
       b.remaining - b.reserved AS available,
       b.initial, b.valid_from, b.valid_until, b.priority, b.created_at,
       p.kind AS plan_kind, p.roaming_zones, p.name_zh, p.name_en
FROM buckets b LEFT JOIN plans p ON p.id = b.plan_id
WHERE (b.line_id IN (SELECT value FROM json_each(:line_ids)) AND b.kind <> 'money'
       AND (b.valid_until IS NULL OR b.valid_until > :earliest))
   OR (b.kind = 'money' AND b.account_id IN (SELECT value FROM json_each(:account_ids)))
ORDER BY b.id
""",
    "seen": """
SELECT record_id FROM usage_records
WHERE peer_id = :peer_id AND record_id IN (SELECT value FROM json_each(:record_ids))
""",
    "insert": "",  # executemany of SQLITE_INSERT (see _insert_records)
}

SQLITE_INSERT = (
    "INSERT INTO usage_records (peer_id, record_id, batch_id, line_id, account_id, kind, units,"
    " started_at, day, zone, rating_group, status, charged_units, wallet_minor, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (peer_id, record_id) DO NOTHING"
)
"""SQLite: one prepared statement run over the batch in C (``executemany``); its row count
says how many were new."""

_COMPILED: dict[str, dict[str, TextClause]] = {}


def _statements(dialect: str) -> dict[str, TextClause]:
    found = _COMPILED.get(dialect)
    if found is None:
        source = _PG if dialect == "postgresql" else _SQLITE
        found = _COMPILED[dialect] = {k: text(v) for k, v in source.items()}
    return found


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


def _uuid(value: Any) -> uuid.UUID:
    """A plain ``uuid.UUID`` (SQLite gives hex text; asyncpg its own UUID type, which
    compares and hashes slowly against plain ones, e.g. in the ledger's dicts)."""
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, str):
        return uuid.UUID(value)
    return uuid.UUID(bytes=value.bytes)


@lru_cache(maxsize=1024)
def _json_text(value: str) -> Any:
    return json.loads(value)


def _json(value: Any) -> Any:
    """A JSON column's value (SQLite and raw PostgreSQL rows hold its text; the same few
    plans' texts repeat on every row, so each is parsed once)."""
    return _json_text(value) if isinstance(value, str) else value


def _zones(value: Any) -> frozenset[str]:
    return _zone_set(value) if isinstance(value, str) else frozenset(value or ())


@lru_cache(maxsize=1024)
def _zone_set(value: str) -> frozenset[str]:
    return frozenset(json.loads(value) or ())


# --- the batch ---------------------------------------------------------------------------


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
    home = settings.usage_home_zone
    dialect = session.get_bind().dialect.name
    sql = _statements(dialect)
    pg = dialect == "postgresql"
    conn = await session.connection()
    results: list[dict[str, Any] | None] = [None] * len(records)

    # Repeated record ids within the batch: the first counts.
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        if r["record_id"] in first:
            results[i] = {"record_id": r["record_id"], "status": rating.DUPLICATE}
        else:
            first[r["record_id"]] = i

    # 1. the lines
    msisdns = sorted({m for r in records if (m := r.get("msisdn"))})
    iccids = sorted({c for r in records if (c := r.get("iccid"))})
    lines_by_msisdn: dict[str, LineInfo] = {}
    lines_by_iccid: dict[str, LineInfo] = {}
    lines: dict[uuid.UUID, LineInfo] = {}
    if msisdns or iccids:
        params: dict[str, Any] = (
            {"msisdns": msisdns, "iccids": iccids} if pg
            else {"msisdns": json.dumps(msisdns), "iccids": json.dumps(iccids)}
        )
        plans: dict[Any, PlanRules] = {}
        for row in (await conn.execute(sql["lines"], params)).all():
            plan = None
            if row.overage_rule is not None:
                plan = plans.get(row.plan_id)
                if plan is None:
                    plan = plans[row.plan_id] = PlanRules(
                        charge_wallet=row.overage_rule == "charge_wallet",
                        overage_rates=_json(row.overage_rates) or {},
                        roaming_rates=_json(row.roaming_rates) or {},
                        zones=frozenset(_json(row.roaming_zones) or ()),
                        currency=row.currency,
                    )
            if row.account_id is None:
                continue  # stock nobody owns: nobody to charge
            loaded = LineInfo(
                id=_uuid(row.id), account_id=_uuid(row.account_id), msisdn=row.msisdn,
                iccid=row.iccid, state=str(row.state), expires_at=_parse_time(row.expires_at),
                plan=plan, buckets={"data": [], "voice": [], "sms": []},
                plan_name=(
                    {"zh-CN": row.name_zh, "en": row.name_en} if row.name_zh is not None else None
                ),
            )
            lines[loaded.id] = loaded
            lines_by_msisdn[loaded.msisdn] = loaded
            lines_by_iccid[loaded.iccid] = loaded

    # Which line each record names.
    line_of: list[LineInfo | None] = [None] * len(records)
    earliest = now
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
        if r["started_at"] < earliest:
            earliest = r["started_at"]

    # 2. their buckets and their owners' wallets, locked in id order
    before: dict[uuid.UUID, int] = {}
    initial: dict[uuid.UUID, int] = {}
    bucket_line: dict[uuid.UUID, LineInfo] = {}
    wallets: dict[tuple[uuid.UUID, str], Wallet] = {}
    wallet_account: dict[uuid.UUID, uuid.UUID] = {}
    bucket_plan: dict[uuid.UUID, dict[str, str]] = {}
    bucket_kind: dict[uuid.UUID, str] = {}
    if lines:
        line_ids = list(lines)
        account_ids = sorted({info.account_id for info in lines.values()})
        if pg:
            params = {"line_ids": line_ids, "account_ids": account_ids, "earliest": earliest}
        else:
            params = {
                "line_ids": json.dumps([i.hex for i in line_ids]),
                "account_ids": json.dumps([a.hex for a in account_ids]),
                "earliest": _sqlite_time(earliest),
            }
        for row in (await conn.execute(sql["buckets"], params)).all():
            bucket_id = _uuid(row.id)
            available = int(row.available)
            before[bucket_id] = available
            if row.kind == "money":
                w = Wallet(bucket_id, available, row.currency)
                wallets[(_uuid(row.account_id), row.currency)] = w
                wallet_account[bucket_id] = _uuid(row.account_id)
                continue
            info = lines[_uuid(row.line_id)]
            zones = _zones(row.roaming_zones)
            addon = row.plan_kind == "addon"
            valid_from = _parse_time(row.valid_from)
            assert valid_from is not None
            state = BucketState(
                id=bucket_id, kind=str(row.kind), remaining=available, initial=int(row.initial),
                valid_from=valid_from, valid_until=_parse_time(row.valid_until),
                priority=int(row.priority), addon=addon, zones=zones,
                home=not rating.is_roaming_pack(addon, zones, home),
                created_at=_parse_time(row.created_at),
            )
            initial[bucket_id] = state.initial
            bucket_kind[bucket_id] = state.kind
            if row.name_zh is not None:
                bucket_plan[bucket_id] = {"zh-CN": row.name_zh, "en": row.name_en}
            bucket_line[bucket_id] = info
            info.buckets[state.kind].append(state)
            if not addon and valid_from <= now and (
                info.period_start is None or valid_from > info.period_start
            ):
                info.period_start = valid_from
        for info in lines.values():
            for kind in rating.KINDS:
                info.buckets[kind] = rating.order(info.buckets[kind])
            if info.plan is not None:
                info.wallet = wallets.get((info.account_id, info.plan.currency))

    # 3. what this peer sent before
    fresh_ids = [records[i]["record_id"] for i in range(len(records)) if line_of[i] is not None]
    if fresh_ids:
        params = (
            {"peer_id": peer_id, "record_ids": fresh_ids} if pg
            else {"peer_id": peer_id.hex, "record_ids": json.dumps(fresh_ids)}
        )
        seen = {row[0] for row in (await conn.execute(sql["seen"], params)).all()}
        if seen:
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
    refused_data: set[uuid.UUID] = set()
    touched: dict[uuid.UUID, set[str]] = defaultdict(set)
    overage_lines: dict[uuid.UUID, LineInfo] = {}
    for i in order:
        r = records[i]
        line = line_of[i]
        assert line is not None
        info = line
        if r["started_at"] > future or (
            info.period_start is not None and r["started_at"] < info.period_start
        ):
            statuses[i] = rating.OUT_OF_ORDER
            continue
        if info.state not in ("active", "grace") or (
            info.expires_at is not None and r["started_at"] >= info.expires_at
        ):
            statuses[i] = rating.LINE_NOT_ACTIVE
            continue
        outcome = rating.rate(
            r["type"], r["units"], r["started_at"], r.get("zone") or home,
            info.buckets[r["type"]], info.plan, info.wallet, home,
        )
        rated[i] = outcome
        statuses[i] = outcome.status
        if outcome.taken:
            touched[info.id].add(r["type"])
        zone = r.get("zone") or home
        if outcome.overage_units and info.plan is not None and (
            zone == home or zone in info.plan.zones
        ):
            overage_lines[info.id] = info  # beyond the allowance (not roaming elsewhere)
        if r["type"] == "data" and outcome.status != rating.CHARGED:
            refused_data.add(info.id)

    # 5. the records, with their outcome
    stored = [i for i in range(len(records)) if i in statuses]
    if stored:
        await _insert_records(conn, sql["insert"], pg, peer_id, batch_id, now, records,
                              line_of, stored, statuses, rated, home,
                              formatting.zone(settings.timezone))

    # 6. the ledger: one entry per bucket per batch
    deltas: dict[uuid.UUID, int] = defaultdict(int)
    for outcome in rated.values():
        for bucket_id, units in outcome.taken:
            deltas[bucket_id] += units
    wallet_by_id = {w.id: w for w in wallets.values()}
    for w in wallet_by_id.values():
        assert w.id is not None
        if before[w.id] != w.remaining:
            deltas[w.id] = before[w.id] - w.remaining
    postings = []
    for bucket_id, used in deltas.items():  # post_batch locks them in id order itself
        if used <= 0:
            continue
        owner = (
            bucket_line[bucket_id].account_id if bucket_id in bucket_line
            else wallet_account[bucket_id]
        )
        postings.append(Posting(
            bucket_id=bucket_id, account_id=owner, delta=-used, reason=EntryReason.usage,
            key=f"usage:{batch_id.hex}:{bucket_id.hex}", memo="usage",
        ))
    if postings:
        await post_postings(session, postings)

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

    counts: dict[str, int] = defaultdict(int)
    out: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        answer = results[i]
        if answer is None:
            status = statuses[i]
            answer = {"record_id": r["record_id"], "status": status}
            got = rated.get(i)
            if got is not None:
                answer["charged_units"] = got.charged_units
                if got.taken:
                    answer["buckets"] = [
                        {"bucket_id": str(b), "units": u} for b, u in got.taken
                    ]
                if got.wallet_minor or got.overage_units:
                    payer = line_of[i]
                    assert payer is not None
                    assert payer.plan is not None
                    answer["wallet"] = {
                        "units": got.overage_units, "minor": got.wallet_minor,
                        "currency": payer.plan.currency,
                    }
        counts[answer["status"]] += 1
        out.append(answer)
    return BatchResult(batch_id, out, dict(counts))


async def _insert_records(
    conn: Any, statement: TextClause, pg: bool, peer_id: uuid.UUID, batch_id: uuid.UUID,
    now: datetime, records: Sequence[RecordIn], line_of: list[LineInfo | None],
    stored: list[int], statuses: dict[int, str], rated: dict[int, Rated], home: str,
    tz: tzinfo,
) -> None:
    rows_line = []
    for i in stored:
        info = line_of[i]
        assert info is not None
        rows_line.append(info)
    days: list[date] = [records[i]["started_at"].astimezone(tz).date() for i in stored]
    charged = [rated[i].charged_units if i in rated else 0 for i in stored]
    wallet = [rated[i].wallet_minor if i in rated else 0 for i in stored]
    zones = [records[i].get("zone") or home for i in stored]
    if pg:
        params: dict[str, Any] = {
            "peer_id": peer_id, "batch_id": batch_id, "now": now,
            "record_ids": [records[i]["record_id"] for i in stored],
            "line_ids": [info.id for info in rows_line],
            "account_ids": [info.account_id for info in rows_line],
            "kinds": [records[i]["type"] for i in stored],
            "units": [records[i]["units"] for i in stored],
            "started": [records[i]["started_at"] for i in stored],
            "days": days, "zones": zones,
            "groups": [records[i].get("rating_group") for i in stored],
            "statuses": [statuses[i] for i in stored],
            "charged": charged, "wallet": wallet,
        }
    else:
        peer, batch, received = peer_id.hex, batch_id.hex, _sqlite_time(now)
        rows = [
            (
                peer, records[i]["record_id"], batch, info.id.hex, info.account_id.hex,
                records[i]["type"], records[i]["units"], _sqlite_time(records[i]["started_at"]),
                day.isoformat(), zone, records[i].get("rating_group"), statuses[i], ch, w, received,
            )
            for i, info, day, zone, ch, w in zip(
                stored, rows_line, days, zones, charged, wallet, strict=True
            )
        ]
        result = await conn.exec_driver_sql(SQLITE_INSERT, rows)
        inserted = result.rowcount
    if pg:
        inserted = len((await conn.execute(statement, params)).all())
    if inserted != len(stored):
        # Another batch stored some of these records between our look-up and now (only a
        # peer sending one record id for two different lines at once can cause it): undo
        # all of this batch; the peer sends it again and gets "duplicate" for those.
        raise Conflict(
            "usage_batch_raced",
            "Some of these records arrived twice at the same moment; send the batch again.",
        )


async def post_postings(session: AsyncSession, postings: Sequence[Posting]) -> None:
    """The ledger's set-based path (``ledger.batch.post_batch``, contract 1). The buckets
    are locked and rating never takes more than they hold, so every posting applies; if
    one did not (a bucket changed under us, which the lock rules out), the whole batch is
    undone rather than answered wrongly."""
    applied = await post_batch(session, postings)
    if any(a.status != "applied" for a in applied):
        raise Conflict(
            "usage_batch_raced",
            "Some of these records arrived twice at the same moment; send the batch again.",
        )


__all__ = ["BatchResult", "RecordIn", "charge_batch", "post_postings"]
