"""The auto-renewal schedule: one worker job (contract 2) that takes the lines whose
renewal attempt is due, pays for them and renews them, set-based.

A round (:func:`run_due`), for at most ``renewal_batch`` lines:

1. **Claim** (one short unit of work): one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE
   SKIP LOCKED) RETURNING`` takes the due settings (``next_attempt_at <= now``), and a
   second one the lapsed lines (grace, suspended) waiting for a top-up whose wallet now
   covers the price (renewed from the wallet at once); one SELECT reads their lines and
   plans.
2. **Decide** in Python: a line renewed another way since (its expiry moved) starts its
   schedule again; a closed, unbound or plan-less line stops; the rest are due.
3. **Charge cards** (no transaction open): card-funded lines go to
   ``payments.cards.charge_cards`` in one call (the provider is asked concurrently, in
   batches). The charge's idempotency key is ``renewal:{line}:{period}:{attempt}``: a
   re-run of the same attempt (a crash, a lease that ran out) asks again with the same
   key and gets the first answer, never a second charge; a new key is only used after a
   definite decline, and a period once renewed is never renewed again (below).
4. **Renew** (one unit of work): the wallet-funded lines, the declined cards that may
   fall back to the wallet and the captured cards go to ``renew_batch`` together;
   exactly one renewal per line and period comes from its UNIQUE(line, period)
   (``renewal_runs``) — a replay is a ``duplicate``, nothing more. Then every claimed
   setting is written back in one statement (the next period's first attempt, or the
   next retry) and the ``renewal_failed`` notices are queued in one call (key per line,
   period and stage, so each is sent once per stage).

**Payment methods switched off** on the admin console (``runtime_settings``, read once
per batch in the claim's unit of work) hold here too: with the card method off no saved
card is charged — a card-funded line falls back to the wallet when its holder allowed it,
else the attempt fails as ``card_switched_off`` (``renewal_failed`` names it) and is
retried on the usual schedule; with the wallet method off no wallet is debited (a
wallet-funded line fails as ``wallet_switched_off``, a declined card does not fall back,
a lapsed line waiting for a top-up is not taken, a suspended one stays parked).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Table, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.db import among, unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line, LineState
from openmvno.notifications.notices import NoticeRequest, notify_many
from openmvno.payments import cards
from openmvno.renewals import schedule
from openmvno.renewals.batch import DueRenewal, renew_batch, update_rows
from openmvno.renewals.models import AutoRenewSetting, Funding
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings
from openmvno.worker.claims import claim_due, release
from openmvno.worker.jobs import JobCounts, describe

log = logging.getLogger("openmvno.renewals")

S = AutoRenewSetting
Status = Literal["succeeded", "declined", "pending"]
CARD_OFF = "card_switched_off"
WALLET_OFF = "wallet_switched_off"


def methods_on(rt: Runtime) -> frozenset[str]:
    """Which of the two off-session funding methods (``card``, ``wallet``) may be used now,
    as of this process's last read of the run-time settings (no database round trip)."""
    return frozenset(m for m in ("card", "wallet") if runtime_settings.method_on(rt, m))


def switched_off(rt: Runtime, *, funding: str, wallet_fallback: bool) -> list[str]:
    """The methods a line's auto-renewal would use (its funding, and the wallet when a card
    may fall back to it) that are switched off now, for the portal and the API to say so
    (call ``runtime_settings.refresh`` first)."""
    on = methods_on(rt)
    used = [funding] + (["wallet"] if funding == "card" and wallet_fallback else [])
    return [m for m in used if m not in on]


@dataclass
class Claimed:
    """One claimed setting with what the decision needs of its line and plan."""

    id: uuid.UUID
    line_id: uuid.UUID
    account_id: uuid.UUID
    funding: Funding
    card_id: uuid.UUID | None
    wallet_fallback: bool
    period_key: str | None
    attempts: int
    waiting_for_wallet: bool
    line_account_id: uuid.UUID | None
    line_auto_renew: bool
    line_state: LineState
    expires_at: datetime | None
    plan_id: uuid.UUID | None
    price_minor: int | None
    currency: str | None
    plan_names: dict[str, str] = field(default_factory=dict)
    topped_up: bool = False
    """Claimed because its lapsed line's wallet now covers the price (a top-up)."""
    # what this round decided
    changes: dict[str, Any] = field(default_factory=dict)
    fund: Literal["wallet", "card"] | None = None
    payment_attempt_id: uuid.UUID | None = None
    card_declined: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class CardCharge:
    """One renewal to charge to a saved card (what ``charge_cards`` is asked)."""

    account_id: uuid.UUID
    card_id: uuid.UUID
    line_id: uuid.UUID
    amount_minor: int
    currency: str
    idempotency_key: str
    description: str


@dataclass(frozen=True)
class CardAnswer:
    status: Status
    payment_attempt_id: uuid.UUID | None = None
    decline_code: str | None = None


# ---------------------------------------------------------------- collaborators


async def charge_cards(rt: Runtime, charges: Sequence[CardCharge]) -> list[CardAnswer]:
    """Charge saved cards through ``payments.cards.charge_cards`` (contract 4): no
    transaction open, the provider asked concurrently; one answer per charge, in order."""
    results = await cards.charge_cards(rt, list(charges))
    return [
        CardAnswer(status=r.status, payment_attempt_id=r.attempt_id, decline_code=r.decline_code)
        for r in results
    ]


async def _notify_failed(session: AsyncSession, items: list[NoticeRequest]) -> None:
    if items:
        await notify_many(session, items)


# ---------------------------------------------------------------- claim


def _lease(rt: Runtime) -> timedelta:
    return timedelta(seconds=rt.settings.renewal_claim_seconds)


def _wallet_covers() -> Any:
    """The setting's wallet holds the price of its line's plan (a top-up arrived)."""
    return exists().where(
        Line.id == S.line_id,
        Plan.id == Line.plan_id,
        Bucket.account_id == S.account_id,
        Bucket.kind == BucketKind.money,
        Bucket.currency == Plan.currency,
        Bucket.remaining - Bucket.reserved >= Plan.price_minor,
        Line.state.in_([LineState.grace, LineState.suspended]),
    )


async def claim(rt: Runtime, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due settings for this worker (see the module docstring)."""
    now = clock.now()
    lease = _lease(rt)
    async with unit_of_work(rt.sessions) as session:
        # The payment methods switched on or off, once per batch (at most one SELECT, and
        # none while this process's copy is fresh): see methods_on.
        await runtime_settings.refresh(session, rt)
        order = [S.next_attempt_at, S.id]
        due = and_(S.enabled.is_(True), S.next_attempt_at <= now)
        rows = await claim_due(session, S, due, order, limit, lease, columns=[S.id], now=now)
        ids = [r[0] for r in rows]
        # A lapsed line waiting for a top-up is renewed from the wallet: not while the
        # wallet method is switched off (it stays waiting).
        if len(ids) < limit and "wallet" in methods_on(rt):
            waiting = and_(S.enabled.is_(True), S.waiting_for_wallet.is_(True), _wallet_covers())
            rows = await claim_due(session, S, waiting, order, limit - len(ids), lease,
                                   columns=[S.id], now=now)
            topped_up = {r[0] for r in rows}
            ids += list(topped_up)
        else:
            topped_up = set()
        if not ids:
            return []
        found = await session.execute(
            select(
                S.id, S.line_id, S.account_id, S.funding, S.card_id, S.wallet_fallback,
                S.period_key, S.attempts, S.waiting_for_wallet, Line.account_id,
                Line.auto_renew, Line.state, Line.expires_at, Line.plan_id, Plan.price_minor,
                Plan.currency, Plan.name_zh, Plan.name_en,
            )
            .join(Line, Line.id == S.line_id)
            .outerjoin(Plan, Plan.id == Line.plan_id)
            .where(among(session, S.id, ids))
            .order_by(S.line_id)
        )
        return [
            Claimed(
                id=r[0], line_id=r[1], account_id=r[2], funding=Funding(r[3]), card_id=r[4],
                wallet_fallback=r[5], period_key=r[6], attempts=r[7], waiting_for_wallet=r[8],
                line_account_id=r[9], line_auto_renew=r[10], line_state=LineState(r[11]),
                expires_at=r[12], plan_id=r[13], price_minor=r[14], currency=r[15],
                plan_names={"zh-CN": r[16] or "", "en": r[17] or ""},
                topped_up=r[0] in topped_up,
            )
            for r in found.all()
        ]


# ---------------------------------------------------------------- decide


def _decide(rt: Runtime, c: Claimed, now: datetime, on: frozenset[str] | None = None) -> None:
    """What to do with one claimed line: ``c.fund`` set means "attempt it now";
    otherwise ``c.changes`` says how its setting is written back (``c.failure`` set: the
    attempt failed already). ``on``: the funding methods switched on (:func:`methods_on`,
    computed once per batch)."""
    settings = rt.settings
    on = methods_on(rt) if on is None else on
    if (
        c.line_account_id != c.account_id
        or not c.line_auto_renew
        or c.line_state in (LineState.terminated, LineState.inventory)
    ):
        c.changes = {"enabled": False, "next_attempt_at": None, "waiting_for_wallet": False}
        return
    if c.plan_id is None or c.price_minor is None or c.expires_at is None:
        c.changes = {"next_attempt_at": schedule.parked_until(settings, now)}
        return
    period = schedule.period_key(c.expires_at)
    if c.period_key != period:  # renewed another way (or first time): a new period
        c.period_key = period
        c.attempts = 0
        c.changes = {"period_key": period, "attempts": 0, "last_failure": "",
                     "waiting_for_wallet": False}
        if c.line_state is LineState.active:
            at, number = schedule.first_attempt(settings, c.expires_at, now)
            c.attempts = number
            c.changes["attempts"] = number
            if at > now:
                c.changes["next_attempt_at"] = at
                return
    wallet_ok = c.funding is Funding.wallet or c.wallet_fallback
    wallet_on = "wallet" in on
    if c.topped_up and wallet_ok and wallet_on:
        c.fund = "wallet"  # the money is there: no card needed
        return
    if c.line_state is LineState.suspended:
        # Attempts stop at suspension; the wallet is taken as soon as it covers the price.
        if not wallet_ok:
            c.changes.update(next_attempt_at=schedule.parked_until(settings, now),
                             waiting_for_wallet=False)
            return
        if not wallet_on:  # stays waiting for the wallet to be switched on again
            c.changes.update(next_attempt_at=schedule.parked_until(settings, now),
                             waiting_for_wallet=True)
            return
        c.fund = "wallet"
        return
    if c.funding is Funding.card and "card" not in on:
        # No saved card is charged off-session while the card method is off.
        if c.wallet_fallback and wallet_on:
            c.fund = "wallet"
        else:
            c.failure = CARD_OFF
        return
    if c.funding is Funding.wallet and not wallet_on:
        c.failure = WALLET_OFF
        return
    c.fund = c.funding.value


def charge_key(c: Claimed) -> str:
    """The card charge's idempotency key: line, period and attempt (see the docstring)."""
    return f"renewal:{c.line_id}:{c.period_key}:{c.attempts}"


async def _charge(
    rt: Runtime, batch: list[Claimed], on: frozenset[str] | None = None
) -> list[Claimed]:
    """Charge the card-funded lines; returns those still waiting for the provider. A
    declined card falls back to the wallet only while the wallet method is on."""
    on = methods_on(rt) if on is None else on
    wanted = [c for c in batch if c.fund == "card"]
    charges: list[CardCharge] = []
    asked: list[Claimed] = []
    for c in wanted:
        if c.card_id is None:
            c.card_declined = "card_unusable"
            continue
        assert c.price_minor is not None
        assert c.currency is not None
        charges.append(CardCharge(
            account_id=c.account_id, card_id=c.card_id, line_id=c.line_id,
            amount_minor=c.price_minor, currency=c.currency, idempotency_key=charge_key(c),
            description=f"auto-renewal {c.period_key}",
        ))
        asked.append(c)
    answers = await charge_cards(rt, charges) if charges else []
    pending: list[Claimed] = []
    for c, answer in zip(asked, answers, strict=True):
        if answer.status == "succeeded":
            c.payment_attempt_id = answer.payment_attempt_id
        elif answer.status == "pending":
            c.fund = None
            pending.append(c)
        else:
            c.card_declined = answer.decline_code or "card_declined"
    for c in wanted:
        if c.card_declined is not None:
            if c.wallet_fallback and "wallet" in on:
                c.fund = "wallet"  # same batch, from the wallet
            else:
                c.fund = None
                c.failure = _reason(c, None)
    return pending


# ---------------------------------------------------------------- renew and write back


def _failed(rt: Runtime, c: Claimed, reason: str, now: datetime) -> NoticeRequest | None:
    """Schedule the next attempt after a failed one; the notice to queue (or None)."""
    settings = rt.settings
    assert c.expires_at is not None
    stage = schedule.stage(settings, c.attempts)
    made = c.attempts + 1
    changes: dict[str, Any] = {"attempts": made, "last_failure": reason[:40],
                               "last_attempt_at": now}
    # Once the line has lapsed, a top-up that covers the price is taken at once.
    lapsed = c.line_state is not LineState.active or now >= c.expires_at
    changes["waiting_for_wallet"] = lapsed and (c.funding is Funding.wallet or c.wallet_fallback)
    if c.line_state is LineState.suspended:
        changes["next_attempt_at"] = schedule.parked_until(settings, now)
    else:
        changes["next_attempt_at"] = schedule.next_after_failure(
            settings, c.expires_at, made, now
        )
    c.changes.update(changes)
    if c.topped_up:
        return None  # the wallet covered it a moment ago: no news for the subscriber
    return NoticeRequest(
        account_id=c.account_id,
        event="renewal_failed",
        key=f"renewal_failed:{c.line_id}:{c.period_key}:{stage}",
        line_id=c.line_id,
        params={
            "plan": c.plan_names,
            "reason": reason,
            "amount_minor": c.price_minor,
            "currency": c.currency,
            # Before expiry: pay before it ends; in grace: before the line is suspended.
            "expires_at": c.expires_at if stage == schedule.BEFORE
            else c.expires_at + timedelta(days=settings.grace_days),
        },
        urgent=c.line_state is not LineState.active,
    )


async def _renew(session: AsyncSession, due: list[Claimed]) -> dict[uuid.UUID, str]:
    """``renew_batch`` for the lines to renew now; the outcome per line."""
    if not due:
        return {}
    requests = []
    for c in due:
        assert c.plan_id is not None
        assert c.period_key is not None
        assert c.fund is not None
        requests.append(DueRenewal(
            line_id=c.line_id, account_id=c.account_id, plan_id=c.plan_id,
            period_key=c.period_key, funding=c.fund,
            payment_attempt_id=c.payment_attempt_id if c.fund == "card" else None,
        ))
    outcomes = await renew_batch(session, requests)
    return {c.line_id: o.status for c, o in zip(due, outcomes, strict=True)}


def _reason(c: Claimed, status: str | None) -> str:
    """Why an attempt failed, as the notice names it: the card first (when one was
    tried), then the wallet."""
    if c.card_declined == "card_unusable" and not c.wallet_fallback:
        return "no_payment_method"
    if c.card_declined is not None:
        return "card_declined"
    if status == "insufficient":
        return "insufficient_funds"
    return str(status)[:40]


_WRITE_BACK = (
    "enabled", "period_key", "next_attempt_at", "attempts", "last_attempt_at", "last_failure",
    "waiting_for_wallet",
)


async def _write_back(session: AsyncSession, batch: list[Claimed]) -> None:
    """Every claimed setting written back and released: one set-based UPDATE per
    distinct set of changed columns (a handful per batch, whatever its size)."""
    now = clock.now()
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for c in batch:
        names = (*(n for n in _WRITE_BACK if n in c.changes), "updated_at")
        groups.setdefault(names, []).append((c.id, *(c.changes[n] for n in names[:-1]), now))
    table = AutoRenewSetting.__table__
    assert isinstance(table, Table)
    for names, rows in groups.items():
        await update_rows(session, table, names, rows, fixed="claimed_until = NULL")


async def _reschedule_renewed(
    session: AsyncSession, rt: Runtime, renewed: list[Claimed], now: datetime
) -> None:
    """The renewed lines' next period: its first attempt, from the new expiry."""
    if not renewed:
        return
    rows = await session.execute(
        select(Line.id, Line.expires_at)
        .where(among(session, Line.id, [c.line_id for c in renewed]))
    )
    expiry: dict[uuid.UUID, datetime | None] = {r[0]: r[1] for r in rows.all()}
    for c in renewed:
        new = expiry.get(c.line_id)
        c.changes = {"attempts": 0, "last_failure": "", "last_attempt_at": now,
                     "waiting_for_wallet": False}
        if new is None:
            c.changes["next_attempt_at"] = schedule.parked_until(rt.settings, now)
            continue
        at, number = schedule.first_attempt(rt.settings, new, now)
        c.changes.update(period_key=schedule.period_key(new), attempts=number,
                         next_attempt_at=max(at, now))


async def _return_unspent_captures(
    session: AsyncSession, due: list[Claimed], outcomes: dict[uuid.UUID, str]
) -> set[uuid.UUID]:
    """Card money captured for a period that was not renewed with it (the line was renewed
    another way meanwhile, or closed) goes back to the subscriber's wallet, once per
    payment attempt (a ledger entry keyed by it). A ``duplicate`` whose renewal run holds
    this very capture (a re-run after a crash) spent it: nothing goes back. Returns the
    lines whose capture went back."""
    candidates = [c for c in due if c.fund == "card" and c.payment_attempt_id is not None
                  and outcomes.get(c.line_id) in ("duplicate", "unavailable")]
    if not candidates:
        return set()
    rows = await session.execute(
        select(RenewalRun.line_id, RenewalRun.period_key, RenewalRun.payment_attempt_id)
        .where(among(session, RenewalRun.line_id, [c.line_id for c in candidates]))
    )
    spent = {(r[0], r[1]): r[2] for r in rows.all()}
    returned: set[uuid.UUID] = set()
    for c in candidates:
        if spent.get((c.line_id, c.period_key or "")) == c.payment_attempt_id:
            continue
        assert c.price_minor is not None
        assert c.currency is not None
        await ledger.credit_wallet(
            session, account_id=c.account_id, currency=c.currency, amount_minor=c.price_minor,
            reason=EntryReason.refund, key=f"renewal-return:{c.payment_attempt_id}",
            memo="auto-renewal not needed",
        )
        log.warning("card capture returned to the wallet",
                    extra={"line_id": str(c.line_id), "status": outcomes.get(c.line_id)})
        returned.add(c.line_id)
    return returned


async def run_due(rt: Runtime) -> int:
    """One batch of due auto-renewals (a worker job); how many lines it handled.

    If the batch fails after its claim (a lost connection, the database refusing a
    client), its lines are given back at once, so the next round of any worker takes
    them instead of waiting out the lease; the charge keys make that retry safe."""
    batch = await claim(rt, rt.settings.renewal_batch)
    if not batch:
        return 0
    try:
        return await _run_claimed(rt, batch)
    except Exception:
        try:
            async with unit_of_work(rt.sessions) as session:
                await release(session, S, [c.id for c in batch])
        except Exception:  # the lease gives them back later, as for a killed worker
            log.exception("could not give back a failed batch", extra={"lines": len(batch)})
        raise


async def _run_claimed(rt: Runtime, batch: list[Claimed]) -> int:
    now = clock.now()
    on = methods_on(rt)  # as read by claim, once for the whole batch
    for c in batch:
        _decide(rt, c, now, on)
    pending = await _charge(rt, batch, on)
    for c in pending:
        c.changes.update(next_attempt_at=now + timedelta(
            minutes=rt.settings.renewal_pending_recheck_minutes))
    due = [c for c in batch if c.fund is not None]
    async with unit_of_work(rt.sessions) as session:
        outcomes = await _renew(session, due)
        returned = await _return_unspent_captures(session, due, outcomes)
        renewed = [c for c in due if outcomes.get(c.line_id) == "renewed"
                   or (outcomes.get(c.line_id) == "duplicate" and c.line_id not in returned)]
        # A capture returned because the line was renewed another way: start again from
        # its new expiry, like a renewal.
        renewed += [c for c in due if c.line_id in returned
                    and outcomes.get(c.line_id) == "duplicate"]
        await _reschedule_renewed(session, rt, renewed, now)
        notices: list[NoticeRequest] = []
        for c in due:
            status = outcomes.get(c.line_id)
            if status in ("renewed", "duplicate"):
                continue
            if status == "unavailable":  # closed, unbound or no plan: the next look stops it
                c.changes.update(next_attempt_at=now, last_failure="unavailable")
                continue
            c.failure = _reason(c, status)
        for c in batch:
            if c.failure is not None:
                notice = _failed(rt, c, c.failure, now)
                if notice is not None:
                    notices.append(notice)
        await _write_back(session, batch)
        await _notify_failed(session, notices)
    log.info("renewals round", extra={"claimed": len(batch), "renewed": len(renewed),
                                       "failed": len(notices)})
    return len(batch)


async def _status(session: AsyncSession, now: datetime) -> JobCounts:
    """For ``openmvno jobs status``: settings due now, held by a worker, and failing (the
    last attempt failed), with the lapsed ones waiting for a top-up."""
    on = S.enabled.is_(True)
    free = or_(S.claimed_until.is_(None), S.claimed_until < now)

    async def count(*where: Any) -> int:
        return int(await session.scalar(select(func.count()).select_from(S).where(*where)) or 0)

    due = await count(on, S.next_attempt_at <= now, free)
    claimed = await count(S.claimed_until >= now)
    failing = await count(on, S.last_failure != "")
    waiting = await count(on, S.waiting_for_wallet.is_(True))
    return JobCounts(due=due, claimed=claimed, failing=failing,
                     detail=f"waiting for a top-up {waiting}")


async def _retry(session: AsyncSession) -> int:
    """For ``openmvno jobs retry``: every failing setting is due again now."""
    result = await session.execute(
        update(S).where(S.enabled.is_(True), S.last_failure != "")
        .values(next_attempt_at=clock.now(), claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


describe(run_due, name="renewals.auto_renew", status=_status, retry=_retry)


__all__ = [
    "CARD_OFF", "WALLET_OFF", "CardAnswer", "CardCharge", "charge_cards", "charge_key", "claim",
    "methods_on", "run_due", "switched_off",
]
