"""The line lifecycle in time: expiry → grace → suspended (停机) → terminated, the released
number's quarantine, and restoring a lapsed line the moment a payment renews it (复机).

Timeline of a line whose plan expires at ``E`` with nothing renewed (settings in
brackets, see docs/lifecycle.md)::

    E                      active → grace       (notice grace_started; unused plan
                                                 buckets expire; network: minimal
                                                 service, or suspended if
                                                 grace_service=none)
    E + grace_days         grace → suspended    (notice suspended; network: suspend)
    E + grace_days
      + suspension_days    suspended → terminated (notice terminated; network:
                                                 terminate; the number goes into
                                                 quarantine)
    … + quarantine_days    the number is available again (the old line keeps its
                           history under a placeholder number)

A payment that renews the plan (an order, an auto-renewal) before termination moves a
grace or suspended line back to ``active`` at once: :func:`restore_one` (the order
path, one line) and :func:`restore_many` (the renewal batch) queue the network's
``restore`` and the ``restored`` notice. The wallet never expires.

Every move is set-based: one batch of due lines per move and transaction, claimed and
changed by one conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, see
:func:`openmvno.worker.claims.update_due`), then one INSERT of line events, one INSERT
of provisioning jobs (``ON CONFLICT DO NOTHING`` on their UNIQUE dedupe keys), the
notices through ``notify_many`` (UNIQUE keys) and, for terminations, one INSERT into the
quarantine. The transaction holds all of it: a worker killed mid-batch leaves nothing
behind and the lines are simply due again; two workers never move the same line (the
row locks, and the state re-checked by the UPDATE).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.provisioning import LineStateRequest, provisioner, set_line_state
from openmvno.catalog.models import Plan
from openmvno.config import Settings
from openmvno.db import Base, unit_of_work
from openmvno.ids import new_id
from openmvno.ledger import service as ledger
from openmvno.lines.models import Line, LineEvent, LineState, NumberQuarantine, NumberState
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from openmvno.worker.claims import update_due
from openmvno.worker.jobs import JobCounts, describe

LINES: Table = Base.metadata.tables[Line.__tablename__]
EVENTS: Table = Base.metadata.tables[LineEvent.__tablename__]
OUTBOX: Table = Base.metadata.tables[OutboxMessage.__tablename__]
QUARANTINE: Table = Base.metadata.tables[NumberQuarantine.__tablename__]
PLANS: Table = Base.metadata.tables[Plan.__tablename__]
S = LineState


@dataclass(frozen=True, slots=True)
class Move:
    """One scheduled state move: lines in ``from_state`` whose expiry is at least
    ``after`` in the past go to ``to_state``."""

    name: str
    from_state: LineState
    to_state: LineState
    after: timedelta
    action: str
    """What the network is told (``minimal``, ``suspend``, ``terminate``)."""
    event: str
    """The subscriber's notice."""
    reason: str


def moves(settings: Settings) -> list[Move]:
    """The three moves, in the order a round runs them."""
    grace = timedelta(days=settings.grace_days)
    suspension = timedelta(days=settings.suspension_days)
    return [
        Move("grace", S.active, S.grace, timedelta(0),
             "minimal" if settings.grace_service == "minimal" else "suspend",
             "grace_started", "plan expired, nothing renewed"),
        Move("suspend", S.grace, S.suspended, grace, "suspend", "suspended",
             "grace period ended, nothing renewed"),
        Move("terminate", S.suspended, S.terminated, grace + suspension, "terminate",
             "terminated", "suspended too long, nothing renewed"),
    ]


def _due(move: Move, now: datetime) -> ColumnElement[bool]:
    c = LINES.c
    return and_(c.state == move.from_state, c.expires_at <= now - move.after)


def _insert(session: AsyncSession, table: Table) -> Any:
    module: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return module.insert(table)


def period(value: datetime) -> str:
    """The period a move belongs to: the expiry it follows, ISO UTC (keys of notices and
    network jobs, so each is once per line and lapse)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _network_job(
    line_id: uuid.UUID, account_id: uuid.UUID | None, msisdn: str, iccid: str, action: str,
    when: str, now: datetime,
) -> dict[str, Any]:
    key = f"line-state:{action}:{line_id}:{when}"
    return {
        "id": new_id(), "kind": OutboxKind.line_state, "dedupe_key": key[:120],
        "account_id": account_id, "recipient": msisdn, "subject": "", "body": "",
        "payload": {"action": action, "line_id": str(line_id), "iccid": iccid,
                    "msisdn": msisdn, "key": key},
        "state": OutboxState.pending, "attempts": 0, "next_attempt_at": now,
        "claimed_until": None, "last_error": "", "created_at": now, "sent_at": None,
    }


async def _queue_network(session: AsyncSession, jobs: Sequence[dict[str, Any]]) -> None:
    if jobs:
        statement = _insert(session, OUTBOX).on_conflict_do_nothing(index_elements=["dedupe_key"])
        await session.execute(statement, list(jobs))


async def _log_events(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, uuid.UUID | None]], *,
    event: str, from_state: str | None, to_state: str | None, reason: str, now: datetime,
) -> None:
    if rows:
        await session.execute(insert(EVENTS), [
            {"id": new_id(), "line_id": line_id, "account_id": account_id, "event": event,
             "from_state": from_state, "to_state": to_state, "reason": reason[:200], "at": now}
            for line_id, account_id in rows
        ])


def _plan_names(row: Any) -> dict[str, str]:
    return {"zh-CN": row.name_zh, "en": row.name_en}


async def _plans(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not ids:
        return {}
    found = await session.execute(
        select(PLANS.c.id, PLANS.c.name_zh, PLANS.c.name_en, PLANS.c.price_minor,
               PLANS.c.currency).where(PLANS.c.id.in_(list(ids)))
    )
    return {r.id: r for r in found.all()}


async def _notify(session: AsyncSession, requests: Sequence[Any]) -> int:
    from openmvno.notifications import notices

    if not requests:
        return 0
    return await notices.notify_many(session, list(requests))


def _notice(event: str, line_id: uuid.UUID, account_id: uuid.UUID, when: str,
            params: dict[str, Any], urgent: bool) -> Any:
    from openmvno.notifications.notices import NoticeRequest

    return NoticeRequest(account_id=account_id, event=event, key=f"{event}:{line_id}:{when}",
                         params=params, line_id=line_id, urgent=urgent)


async def apply_move(
    session: AsyncSession, settings: Settings, move: Move, *, now: datetime | None = None,
    limit: int | None = None,
) -> int:
    """One batch of ``move`` in the caller's transaction; returns how many lines moved."""
    now = now or clock.now()
    c = LINES.c
    moved = await update_due(
        session, LINES, _due(move, now), [c.expires_at, c.id], limit or settings.lifecycle_batch,
        {"state": move.to_state, "state_changed_at": now, "updated_at": now},
        returning=[c.id, c.account_id, c.msisdn, c.iccid, c.plan_id, c.expires_at, c.kind],
    )
    if not moved:
        return 0
    await _log_events(
        session, [(r.id, r.account_id) for r in moved], event="state",
        from_state=move.from_state.value, to_state=move.to_state.value, reason=move.reason,
        now=now,
    )
    await _queue_network(session, [
        _network_job(r.id, r.account_id, r.msisdn, r.iccid, move.action, period(r.expires_at), now)
        for r in moved
    ])
    plans = await _plans(session, {r.plan_id for r in moved if r.plan_id}) if (
        move.event == "grace_started") else {}
    requests = []
    for r in moved:
        if r.account_id is None:
            continue
        params: dict[str, Any] = {}
        if move.event == "grace_started":
            plan = plans.get(r.plan_id)
            if plan is None:
                continue
            params = {"plan": _plan_names(plan),
                      "grace_ends_at": r.expires_at + timedelta(days=settings.grace_days),
                      "amount_minor": plan.price_minor, "currency": plan.currency}
        requests.append(_notice(move.event, r.id, r.account_id, period(r.expires_at), params,
                                urgent=move.event != "terminated"))
    await _notify(session, requests)
    if move.to_state is S.terminated:
        available = now + timedelta(days=settings.number_quarantine_days)
        statement = _insert(session, QUARANTINE).on_conflict_do_nothing(
            index_elements=["line_id"]
        )
        await session.execute(statement, [
            {"id": new_id(), "line_id": r.id, "msisdn": r.msisdn, "kind": r.kind,
             "state": NumberState.quarantined, "terminated_at": now, "available_at": available,
             "released_at": None}
            for r in moved
        ])
    return len(moved)


def placeholder_number(line_id: uuid.UUID) -> str:
    """What a terminated line shows once its number is released (unique, never dialable)."""
    return "~" + line_id.hex[:19]


async def release_numbers(
    session: AsyncSession, settings: Settings, *, now: datetime | None = None,
    limit: int | None = None,
) -> int:
    """Numbers whose quarantine is over become available: the old line keeps its history
    under :func:`placeholder_number`, the MSISDN may be imported again on new stock."""
    now = now or clock.now()
    q = QUARANTINE.c
    released = await update_due(
        session, QUARANTINE, and_(q.state == NumberState.quarantined, q.available_at <= now),
        [q.available_at, q.id], limit or settings.lifecycle_batch,
        {"state": NumberState.available, "released_at": now},
        returning=[q.line_id, q.msisdn],
    )
    if not released:
        return 0
    await session.execute(
        update(LINES).where(LINES.c.id == bindparam("b_id"), LINES.c.msisdn == bindparam("b_old"))
        .values(msisdn=bindparam("b_new")).execution_options(synchronize_session=False),
        [{"b_id": r.line_id, "b_old": r.msisdn, "b_new": placeholder_number(r.line_id)}
         for r in released],
    )
    owners = {r.id: r.account_id for r in (await session.execute(
        select(LINES.c.id, LINES.c.account_id).where(LINES.c.id.in_([r.line_id for r in released]))
    )).all()}
    await _log_events(
        session, [(r.line_id, owners.get(r.line_id)) for r in released], event="number_released",
        from_state=None, to_state=None, reason="quarantine over: the number may be issued again",
        now=now,
    )
    return len(released)


# --- restoring a lapsed line (复机) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restored:
    """A grace or suspended line a payment has just renewed (already ``active``)."""

    line_id: uuid.UUID
    account_id: uuid.UUID
    msisdn: str
    iccid: str
    from_state: str
    expires_at: datetime
    plan: Any
    """Its plan: a Plan, or names ``{'zh-CN': …, 'en': …}``."""


async def queue_restored(session: AsyncSession, items: Sequence[Restored]) -> int:
    """The network's ``restore`` and the ``restored`` notice of each line (two INSERTs
    and ``notify_many``, keyed on the new expiry: once per line and renewal)."""
    if not items:
        return 0
    now = clock.now()
    await _queue_network(session, [
        _network_job(i.line_id, i.account_id, i.msisdn, i.iccid, "restore", period(i.expires_at),
                     now)
        for i in items
    ])
    requests = [
        _notice("restored", i.line_id, i.account_id, period(i.expires_at),
                {"plan": _plan_param(i.plan), "expires_at": i.expires_at}, urgent=True)
        for i in items
    ]
    await _notify(session, requests)
    return len(items)


def _plan_param(plan: Any) -> Any:
    if isinstance(plan, Mapping):
        return dict(plan)
    if hasattr(plan, "name_zh"):
        return {"zh-CN": plan.name_zh, "en": plan.name_en}
    return plan


async def restore_one(
    session: AsyncSession, line: Line, *, from_state: LineState | str, plan: Any
) -> None:
    """For the order path: ``line`` was just moved from grace or suspended back to active
    (``lines.states.transition``) and its expiry extended; queue the rest of 复机."""
    state = LineState(from_state)
    if state not in (S.grace, S.suspended) or line.account_id is None or line.expires_at is None:
        return
    await queue_restored(session, [Restored(
        line_id=line.id, account_id=line.account_id, msisdn=line.msisdn, iccid=line.iccid,
        from_state=state.value, expires_at=line.expires_at, plan=plan,
    )])


async def restore_many(
    session: AsyncSession, line_ids: Sequence[uuid.UUID], *, reason: str,
    plans: Mapping[uuid.UUID, Any] | None = None,
) -> list[Restored]:
    """For the renewal batch: every line of ``line_ids`` still in grace or suspended goes
    back to ``active`` (its expiry already extended by the caller, in this transaction),
    with its line event, the network's ``restore`` and the ``restored`` notice; a fixed
    number of statements whatever the batch's size. ``plans`` (line id → Plan or names)
    saves the look-up of the lines' plans. Returns the lines restored."""
    if not line_ids:
        return []
    c = LINES.c
    lapsed = (S.grace, S.suspended)
    before = (await session.execute(
        select(c.id, c.state).where(c.id.in_(list(line_ids)), c.state.in_(lapsed))
        .with_for_update(key_share=True)
    )).all()
    if not before:
        return []
    previous = {r.id: str(r.state) for r in before}
    now = clock.now()
    changed = (await session.execute(
        update(LINES).where(c.id.in_(list(previous)), c.state.in_(lapsed))
        .values(state=S.active, state_changed_at=now, updated_at=now)
        .returning(c.id, c.account_id, c.msisdn, c.iccid, c.plan_id, c.expires_at)
        .execution_options(synchronize_session=False)
    )).all()
    rows_by_state: dict[str, list[tuple[uuid.UUID, uuid.UUID | None]]] = {}
    for r in changed:
        rows_by_state.setdefault(previous[r.id], []).append((r.id, r.account_id))
    for state, rows in rows_by_state.items():
        await _log_events(session, rows, event="state", from_state=state, to_state=S.active.value,
                          reason=reason, now=now)
    known = dict(plans or {})
    missing = {r.plan_id for r in changed if r.id not in known and r.plan_id}
    looked_up = await _plans(session, missing)
    items = [
        Restored(
            line_id=r.id, account_id=r.account_id, msisdn=r.msisdn, iccid=r.iccid,
            from_state=previous[r.id], expires_at=r.expires_at,
            plan=known.get(r.id) or (_plan_names(looked_up[r.plan_id])
                                     if r.plan_id in looked_up else ""),
        )
        for r in changed if r.account_id is not None and r.expires_at is not None
    ]
    await queue_restored(session, items)
    return items


# --- the network job ---------------------------------------------------------------------


async def deliver(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for ``OutboxKind.line_state``: tell the network (safe to repeat: the
    adapter keys its work on the job's key)."""
    p = message.payload
    request = LineStateRequest(
        line_id=uuid.UUID(str(p["line_id"])), iccid=str(p.get("iccid", "")),
        msisdn=str(p.get("msisdn", message.recipient)), action=str(p["action"]),
        key=str(p.get("key", message.dedupe_key)),
    )
    return await set_line_state(provisioner(rt.settings), request)


# --- the worker job ----------------------------------------------------------------------


async def run_due(rt: Runtime) -> int:
    """One batch of each move, the numbers out of quarantine and the expired buckets, each
    in its own short transaction; returns how many items were handled."""
    settings = rt.settings
    done = 0
    for move in moves(settings):
        async with unit_of_work(rt.sessions) as session:
            done += await apply_move(session, settings, move)
    async with unit_of_work(rt.sessions) as session:
        done += await ledger.expire_due(session, limit=settings.lifecycle_batch)
    async with unit_of_work(rt.sessions) as session:
        done += await release_numbers(session, settings)
    return done


async def _status(session: AsyncSession, now: datetime) -> JobCounts:
    settings: Settings = session.info.get("settings") or Settings()
    parts = []
    due = 0
    for move in moves(settings):
        n = int(await session.scalar(select(func.count()).where(_due(move, now))) or 0)
        parts.append(f"{move.name} {n}")
        due += n
    q = QUARANTINE.c
    numbers = int(await session.scalar(
        select(func.count()).where(q.state == NumberState.quarantined, q.available_at <= now)
    ) or 0)
    parts.append(f"numbers {numbers}")
    o = OUTBOX.c
    dead = int(await session.scalar(
        select(func.count()).where(o.kind == OutboxKind.line_state, o.state == OutboxState.dead)
    ) or 0)
    return JobCounts(due=due + numbers, claimed=0, failing=dead,
                     detail=", ".join(parts) + f"; network jobs dead {dead}")


async def _retry(session: AsyncSession) -> int:
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.kind == OutboxKind.line_state, OutboxMessage.state == OutboxState.dead)
        .values(state=OutboxState.pending, attempts=0, next_attempt_at=clock.now(),
                claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


describe(run_due, name="lines.lifecycle", status=_status, retry=_retry)


__all__ = [
    "Move",
    "Restored",
    "apply_move",
    "deliver",
    "moves",
    "placeholder_number",
    "queue_restored",
    "release_numbers",
    "restore_many",
    "restore_one",
    "run_due",
]
