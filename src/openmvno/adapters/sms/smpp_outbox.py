"""SMS from the outbox over an SMPP bind, and delivery receipts back onto the outbox rows.

Run by ``openmvno smpp`` (one bind per process; any number of processes). Each process
claims due SMS rows with one statement (``worker.claims.claim_due``: ``SELECT … FOR
UPDATE SKIP LOCKED`` picked once, then a lease set), so a row is submitted by exactly
one process at a time; the ordinary ``worker`` leaves SMS rows alone while
``sms_adapter=smpp``.

Never twice: every part is recorded ``sending`` (committed) *before* its ``submit_sm``
goes out, and its answer right after. A part whose answer never came (the link dropped)
is in doubt: it is not sent again while a delivery receipt may still name it; a receipt
for a message id we never recorded is matched to that phone's in-doubt part (by the
``user_message_reference`` the SMSC echoes, else the oldest), which then counts as sent.
Only after ``smpp_in_doubt_seconds`` without any receipt is it submitted again. A
throttled part ("not now") was not accepted and simply goes again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.adapters.sms.smpp import (
    Inbound,
    LinkConfig,
    LinkDown,
    Receipt,
    SmppLink,
    encode_text,
)
from openmvno.adapters.sms.smpp_models import PartState, SmsPart
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from openmvno.worker.claims import claim_due

log = logging.getLogger("openmvno.smpp")

CLAIM_SECONDS = 120
MAX_ATTEMPTS = 8
REDACTED = "[delivered; the one-time code is not kept]"
DONE = (PartState.accepted, PartState.delivered)
InboundHandler = Callable[[Inbound], Awaitable[None]]
InboundBatchHandler = Callable[[Sequence[Inbound]], Awaitable[Any]]


def link_config(settings: Settings, name: str) -> LinkConfig:
    return LinkConfig(
        host=settings.smpp_host, port=settings.smpp_port, system_id=settings.smpp_system_id,
        password=settings.smpp_password.get_secret_value(),
        system_type=settings.smpp_system_type,
        source_addr=settings.smpp_source_addr or settings.short_code,
        window=settings.smpp_window, max_per_second=settings.smpp_max_per_second,
        enquire_link_seconds=settings.smpp_enquire_link_seconds,
        response_timeout_seconds=settings.smpp_response_timeout_seconds,
        reconnect_min_seconds=settings.smpp_reconnect_min_seconds,
        reconnect_max_seconds=settings.smpp_reconnect_max_seconds,
        throttle_pause_seconds=settings.smpp_throttle_pause_seconds, name=name,
    )


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    recipient: str
    body: str
    account_id: uuid.UUID | None
    sensitive: bool


async def _claim_in(
    session: AsyncSession, limit: int, skip: Collection[uuid.UUID] = ()
) -> list[Claimed]:
    """Claim up to ``limit`` due SMS rows (one statement, :func:`claim_due`), oldest due
    first; rows in ``skip`` are still in this sender's hands (settled, their task not yet
    done) and are not leased again."""
    due = and_(
        OutboxMessage.kind == OutboxKind.sms,
        OutboxMessage.state == OutboxState.pending,
        OutboxMessage.next_attempt_at <= clock.now(),
        OutboxMessage.id.not_in(list(skip)) if skip else true(),
    )
    rows = await claim_due(
        session, OutboxMessage, due, [OutboxMessage.next_attempt_at], limit,
        timedelta(seconds=CLAIM_SECONDS),
        columns=[OutboxMessage.id, OutboxMessage.recipient, OutboxMessage.body,
                 OutboxMessage.account_id, OutboxMessage.payload,
                 OutboxMessage.next_attempt_at, OutboxMessage.created_at],
        extra_values={"attempts": OutboxMessage.attempts + 1},
    )
    rows.sort(key=lambda r: (r.next_attempt_at, r.created_at, r.id))
    return [Claimed(r.id, r.recipient, r.body, r.account_id,
                    bool((r.payload or {}).get("sensitive"))) for r in rows]


async def claim(rt: Runtime, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due SMS rows for this process, in one statement."""
    async with unit_of_work(rt.sessions) as session:
        return await _claim_in(session, limit)


T = TypeVar("T")


class Coalescer(Generic[T]):
    """Items handed in one at a time, handled in batches: while one batch runs, the items
    that arrive wait and go together in the next (one transaction for all). Each caller
    returns once its item is handled (committed). A batch that fails is run again one
    item at a time, so one bad item fails only itself."""

    def __init__(self, many: Callable[[list[T]], Awaitable[Any]],
                 one: Callable[[T], Awaitable[Any]], *, limit: int = 200,
                 after: Callable[[], None] | None = None) -> None:
        self.many, self.one, self.limit, self.after = many, one, limit, after
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def __call__(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[:self.limit]
            del self._queue[:self.limit]
            self.batches += 1
            try:
                await self.many([item for item, _ in batch])
            except Exception:
                log.exception("a batch failed; its items are run one at a time")
                for item, future in batch:
                    try:
                        await self.one(item)
                    except Exception as exc:  # noqa: BLE001 - its caller gets it
                        if not future.done():
                            future.set_exception(exc)
                        continue
                    if not future.done():
                        future.set_result(None)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            if self.after is not None:
                self.after()


Plan = list[tuple[uuid.UUID, int, int, int | None]]
"""A message's parts to submit now: (part id, seq, concat ref, user reference)."""


@dataclass
class _Round:
    """What one claimed batch's submits came to, recorded in one unit of work."""

    accepted: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    unsent: list[tuple[list[uuid.UUID], str, list[uuid.UUID]]] = field(default_factory=list)
    outcomes: dict[uuid.UUID, str | None] = field(default_factory=dict)


class SmppSender:
    """One bind's sender: claims, submits, records answers and receipts."""

    def __init__(self, rt: Runtime, *, name: str | None = None,
                 on_inbound: InboundHandler | None = None,
                 on_inbound_many: InboundBatchHandler | None = None) -> None:
        self.rt = rt
        self.name = (name or f"smpp-{secrets.token_hex(3)}")[:40]
        self.wake = asyncio.Event()
        self._on_inbound = on_inbound
        self._inbound_batches: Coalescer[Inbound] | None = None
        self._sqlite = rt.engine.dialect.name == "sqlite"
        # One for every sender on this runtime (binds in one process take turns fairly).
        self._write_lock: asyncio.Lock = rt.extras.setdefault("smpp_write_lock", asyncio.Lock())
        if on_inbound_many is not None:
            handle_many = on_inbound_many

            async def many(items: Sequence[Inbound]) -> None:
                async with self._writing():
                    await handle_many(items)

            async def one(item: Inbound) -> None:
                async with self._writing():
                    await (on_inbound(item) if on_inbound else handle_many([item]))

            self._inbound_batches = Coalescer(many, one, after=self.wake.set)
        self._receipts: Coalescer[Receipt] = Coalescer(self._receipts_many, self._receipt_one)
        self.link = SmppLink(link_config(rt.settings, self.name),
                             on_receipt=self.on_receipt, on_inbound=self._inbound)
        self._busy: set[asyncio.Task[None]] = set()
        self._inflight: set[uuid.UUID] = set()
        self.submitted = 0

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """On SQLite (one writer at a time) this process's write transactions take turns
        here, handed on at once, instead of polling the database lock in its busy
        handler (sleeps of up to 100 ms each)."""
        if not self._sqlite:
            yield
            return
        async with self._write_lock:
            yield

    # -------------------------------------------------------------- running

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the bind and send until ``stop``; then finish what is in hand and unbind."""
        link_stop = asyncio.Event()
        link_task = asyncio.create_task(self.link.run(link_stop))
        try:
            await self._send_loop(stop)
        finally:
            if self._busy:
                await asyncio.gather(*self._busy, return_exceptions=True)
            link_stop.set()
            await link_task

    async def _send_loop(self, stop: asyncio.Event) -> None:
        poll = self.rt.settings.worker_poll_seconds
        limit = max(1, self.rt.settings.smpp_window) * 4
        while not stop.is_set():
            if not self.link.bound.is_set():
                await _first(stop.wait(), self.link.bound.wait())
                continue
            free = limit - len(self._inflight)
            self.wake.clear()  # before the claim: a reply queued meanwhile wakes us again
            batch = await self._claim_and_prepare(free) if free > 0 else []
            if batch:
                ids = [m.id for m, _ in batch]
                task = asyncio.create_task(self._deliver_batch_safely(batch))
                self._busy.add(task)
                task.add_done_callback(self._busy.discard)
                task.add_done_callback(functools.partial(self._done, ids))
            else:
                await _first(stop.wait(), self.wake.wait(), asyncio.sleep(poll))

    def _done(self, outbox_ids: list[uuid.UUID], _: object) -> None:
        self._inflight.difference_update(outbox_ids)
        self.wake.set()  # room in the window again: claim more now, not at the next poll

    async def _inbound(self, message: Inbound) -> None:
        if self._inbound_batches is not None:
            await self._inbound_batches(message)  # wakes the sender after each batch
            return
        if self._on_inbound is None:
            log.warning("inbound SMS dropped: no handler")
            return
        await self._on_inbound(message)
        self.wake.set()  # the reply is in the outbox: send it now, not at the next poll

    # -------------------------------------------------------------- a batch

    async def _claim_and_prepare(self, limit: int) -> list[tuple[Claimed, Plan]]:
        """Claim due rows and record their parts ``sending`` in the same transaction (one
        commit before any of their submits goes out)."""
        in_doubt = timedelta(seconds=self.rt.settings.smpp_in_doubt_seconds)
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            # Rows this sender still has in hand are left out of the claim itself: leased
            # and then dropped here, they would wait out the whole lease unsent.
            claimed = await _claim_in(session, limit, skip=set(self._inflight))
            if not claimed:
                return []
            self._inflight.update(m.id for m in claimed)
            plans = await _prepare(session, claimed, self.name, in_doubt)
        return [(m, plans[m.id]) for m in claimed]

    async def _deliver_batch_safely(self, batch: list[tuple[Claimed, Plan]]) -> None:
        try:
            await self._deliver_batch(batch)
        except Exception:
            log.exception("smpp delivery failed", extra={"outbox_ids": len(batch)})
            for message, _ in batch:
                with contextlib.suppress(Exception):
                    await self._release(message.id, retry_in=5.0, error="internal error",
                                        count=True)

    async def _deliver_batch(self, batch: list[tuple[Claimed, Plan]]) -> None:
        # The submits are recorded: a crash from here on leaves them in doubt, never resent
        # blindly.
        result = _Round()
        await asyncio.gather(*(self._submit(m, plan, result) for m, plan in batch))
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            await _record_answers(session, result.accepted)
            await _record_unsent(session, result.unsent)
            await _settle(session, self.rt.settings, [m for m, _ in batch], result.outcomes)

    async def deliver(self, message: Claimed) -> None:
        """Submit one claimed message (its parts, answers and outbox row recorded)."""
        in_doubt = timedelta(seconds=self.rt.settings.smpp_in_doubt_seconds)
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            plans = await _prepare(session, [message], self.name, in_doubt)
        await self._deliver_batch([(message, plans[message.id])])

    async def _submit(self, message: Claimed, plan: Plan, result: _Round) -> None:
        encoded = encode_text(message.body, plan[0][2]) if plan else None
        outcome: str | None = None
        for index, (part_id, seq, _, reference) in enumerate(plan):
            assert encoded is not None
            try:
                answer = await self.link.submit(
                    to=message.recipient, short_message=encoded.parts[seq - 1],
                    data_coding=encoded.data_coding, esm_class=encoded.esm_class,
                    user_reference=reference, tag=part_id,
                )
            except LinkDown:
                # This part is in doubt; the ones after it never went.
                result.unsent.append(([p for p, *_ in plan[index + 1:]], "", []))
                outcome = "link"
                break
            if answer.accepted:
                result.accepted.append((part_id, answer.message_id))
                self.submitted += 1
                continue
            result.unsent.append(([part_id] + [p for p, *_ in plan[index + 1:]],
                                  answer.description, [] if answer.temporary else [part_id]))
            outcome = "throttled" if answer.temporary else f"refused: {answer.description}"
            break
        result.outcomes[message.id] = outcome

    async def _release(self, outbox_id: uuid.UUID, *, retry_in: float, error: str,
                       count: bool) -> None:
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            row = await session.get(OutboxMessage, outbox_id)
            if row is None or row.state != OutboxState.pending:
                return
            row.claimed_until = None
            row.last_error = error
            if count and row.attempts >= MAX_ATTEMPTS:
                row.state = OutboxState.dead
            row.next_attempt_at = clock.now() + timedelta(seconds=retry_in)

    # -------------------------------------------------------------- receipts

    async def on_receipt(self, receipt: Receipt) -> None:
        await self._receipts(receipt)

    async def _receipts_many(self, receipts: list[Receipt]) -> None:
        """Receipts for parts this bind submitted (the usual case) in a fixed number of
        statements; any other (to be matched by message id or to an in-doubt part) one
        after the other, in the same transaction."""
        known = {r.message_id: self.link.answered.get(r.message_id) for r in receipts}
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            ids = sorted({i for i in known.values() if i is not None})
            parts = {p.id: p for p in (await session.scalars(
                select(SmsPart).where(SmsPart.id.in_(ids)).order_by(SmsPart.id)
                .with_for_update())).all()} if ids else {}
            now = clock.now()
            touched: set[uuid.UUID] = set()
            for receipt in receipts:
                part_id = known[receipt.message_id]
                part = parts.get(part_id) if part_id is not None else None
                if part is None:
                    await self._apply_receipt(session, receipt)
                    continue
                _receipt_on(part, receipt, now)
                touched.add(part.outbox_id)
            if not touched:
                return
            await session.flush()
            outbox = sorted(touched)
            rows = (await session.scalars(
                select(OutboxMessage).where(OutboxMessage.id.in_(outbox),
                                            OutboxMessage.state == OutboxState.pending)
                .order_by(OutboxMessage.id).with_for_update())).all()
            by_outbox: dict[uuid.UUID, list[SmsPart]] = {i: [] for i in outbox}
            for part in (await session.scalars(
                    select(SmsPart).where(SmsPart.outbox_id.in_(outbox)))).all():
                by_outbox[part.outbox_id].append(part)
            for row in rows:
                if all(p.state in DONE or p.receipt_at for p in by_outbox[row.id]):
                    _sent(row, now)

    async def _receipt_one(self, receipt: Receipt) -> None:
        async with self._writing(), unit_of_work(self.rt.sessions) as session:
            await self._apply_receipt(session, receipt)

    async def _apply_receipt(self, session: AsyncSession, receipt: Receipt) -> None:
        part = await _part_for(session, receipt, self.link.answered.get(receipt.message_id))
        if part is None:
            log.warning("receipt for an unknown message", extra={"id": receipt.message_id})
            return
        now = clock.now()
        _receipt_on(part, receipt, now)
        await session.flush()
        row = await session.get(OutboxMessage, part.outbox_id, with_for_update=True)
        if row is not None and row.state == OutboxState.pending:
            parts = (await session.scalars(
                select(SmsPart).where(SmsPart.outbox_id == row.id))).all()
            if all(p.state in DONE or p.receipt_at for p in parts):
                _sent(row, now)  # the reconciled in-doubt part was the last one


async def _prepare(session: AsyncSession, messages: Sequence[Claimed], bind: str,
                   in_doubt: timedelta) -> dict[uuid.UUID, Plan]:
    """Record ``sending`` every part of these messages that goes now (new ones are
    inserted in one statement); their plans by outbox id."""
    ids = [m.id for m in messages]
    existing: dict[uuid.UUID, list[SmsPart]] = {i: [] for i in ids}
    for part in (await session.scalars(
            select(SmsPart).where(SmsPart.outbox_id.in_(ids))
            .order_by(SmsPart.outbox_id, SmsPart.seq))).all():
        existing[part.outbox_id].append(part)
    now = clock.now()
    plans: dict[uuid.UUID, Plan] = {}
    fresh: list[SmsPart] = []
    for message in messages:
        parts = existing[message.id]
        if parts:
            todo = [p for p in parts if p.state == PartState.new or (
                p.state == PartState.sending and p.submitted_at is not None
                and p.submitted_at + in_doubt <= now)]
            for p in todo:
                p.state, p.submitted_at, p.bind = PartState.sending, now, bind
                p.submits += 1
        else:
            ref = secrets.randbelow(256)
            total = len(encode_text(message.body, ref).parts)
            todo = [
                SmsPart(id=uuid.uuid4(), outbox_id=message.id, account_id=message.account_id,
                        recipient=message.recipient, seq=seq, total=total, concat_ref=ref,
                        user_reference=secrets.randbelow(0xFFFF) + 1, state=PartState.sending,
                        submitted_at=now, bind=bind, submits=1)
                for seq in range(1, total + 1)
            ]
            fresh.extend(todo)
        plans[message.id] = [(p.id, p.seq, p.concat_ref, p.user_reference) for p in todo]
    if fresh:
        session.add_all(fresh)
    await session.flush()
    return plans


async def _record_answers(session: AsyncSession, accepted: list[tuple[uuid.UUID, str]]
                          ) -> None:
    """The SMSC took these parts (with its message ids)."""
    if not accepted:
        return
    ids = sorted({part_id for part_id, _ in accepted})
    parts = {p.id: p for p in (await session.scalars(
        select(SmsPart).where(SmsPart.id.in_(ids)).order_by(SmsPart.id)
        .with_for_update())).all()}
    message_ids = sorted({m for _, m in accepted if m})
    holders = {p.message_id: p for p in (await session.scalars(
        select(SmsPart).where(SmsPart.message_id.in_(message_ids)).order_by(SmsPart.id)
        .with_for_update())).all()} if message_ids else {}
    now = clock.now()
    for part_id, message_id in accepted:
        part = parts.get(part_id)
        if part is None:
            continue
        part.answered_at = now
        holder = holders.get(message_id) if message_id else None
        if holder is not None and holder.id != part_id:
            # A receipt overtook this answer and was matched to a sibling in doubt: the
            # receipt is ours; the sibling goes back to waiting for its own.
            part.state, part.receipt_at, part.error = holder.state, holder.receipt_at, \
                holder.error
            holder.message_id, holder.state = None, PartState.sending
            holder.receipt_at, holder.error = None, ""
            await session.flush()
            part.message_id = message_id
            holders[message_id] = part
            continue
        if part.message_id is None:
            part.message_id = message_id or None
        if part.state in (PartState.sending, PartState.new):
            part.state = PartState.accepted
    await session.flush()


async def _record_unsent(session: AsyncSession,
                         groups: list[tuple[list[uuid.UUID], str, list[uuid.UUID]]]) -> None:
    """Parts that did not go (back to ``new``), or were refused for good (``failed``)."""
    groups = [g for g in groups if g[0]]
    if not groups:
        return
    ids = sorted({i for part_ids, _, _ in groups for i in part_ids})
    parts = {p.id: p for p in (await session.scalars(
        select(SmsPart).where(SmsPart.id.in_(ids)).order_by(SmsPart.id))).all()}
    now = clock.now()
    for part_ids, error, final in groups:
        for part_id in part_ids:
            part = parts.get(part_id)
            if part is None or part.state != PartState.sending:
                continue
            part.state = PartState.failed if part_id in final else PartState.new
            part.error = error[:200]
            part.answered_at = now if error else part.answered_at
    await session.flush()


async def _settle(session: AsyncSession, settings: Settings, messages: Sequence[Claimed],
                  outcomes: dict[uuid.UUID, str | None]) -> None:
    """Mark the outbox rows after a round: sent once every part is in the SMSC's hands;
    otherwise due again when it makes sense (after a throttle pause, a reconnect, or
    the in-doubt wait)."""
    ids = sorted(m.id for m in messages)
    rows = (await session.scalars(
        select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)
        .with_for_update())).all()
    by_outbox: dict[uuid.UUID, list[SmsPart]] = {i: [] for i in ids}
    for part in (await session.scalars(
            select(SmsPart).where(SmsPart.outbox_id.in_(ids)))).all():
        by_outbox[part.outbox_id].append(part)
    now = clock.now()
    for row in rows:
        if row.state != OutboxState.pending:
            continue
        parts = by_outbox[row.id]
        outcome = outcomes.get(row.id)
        row.claimed_until = None
        if outcome is not None and outcome.startswith("refused"):
            row.state, row.last_error = OutboxState.dead, f"SMSC {outcome}"[:500]
            continue
        if all(p.state in DONE or (p.state == PartState.failed and p.receipt_at)
               for p in parts):
            _sent(row, now)
            continue
        doubt = [p.submitted_at for p in parts
                 if p.state == PartState.sending and p.submitted_at is not None]
        if doubt:
            wait = min(doubt) + timedelta(seconds=settings.smpp_in_doubt_seconds) - now
            row.last_error = "submit in doubt (no answer before the link dropped)"
        elif outcome == "throttled":
            wait = timedelta(seconds=settings.smpp_throttle_pause_seconds)
            row.last_error = "throttled by the SMSC"
        else:
            wait = timedelta(seconds=settings.smpp_reconnect_min_seconds)
            row.last_error = "the SMPP link went down"
        row.attempts = max(0, row.attempts - 1)  # "not now" does not use up an attempt
        row.next_attempt_at = now + max(wait, timedelta(0))


def _receipt_on(part: SmsPart, receipt: Receipt, now: datetime) -> None:
    if part.message_id is None and receipt.message_id:
        part.message_id = receipt.message_id
    if receipt.final:
        part.state = PartState.delivered if receipt.delivered else PartState.failed
        part.error = "" if receipt.delivered else (
            f"{receipt.stat} err:{receipt.error}" if receipt.error else receipt.stat)
        part.receipt_at = now
    elif part.state in (PartState.sending, PartState.new):
        part.state = PartState.accepted


def _sent(row: OutboxMessage, now: datetime) -> None:
    row.state, row.sent_at, row.last_error, row.claimed_until = (
        OutboxState.sent, now, "", None)
    if (row.payload or {}).get("sensitive"):
        row.body = REDACTED  # every part is in the SMSC's hands: no resend needs the code


async def _part_for(session: AsyncSession, receipt: Receipt,
                    known: uuid.UUID | None) -> SmsPart | None:
    if known is not None:
        found = await session.get(SmsPart, known, with_for_update=True)
        if found is not None:
            return found
    if receipt.message_id:
        found = await session.scalar(
            select(SmsPart).where(SmsPart.message_id == receipt.message_id).with_for_update())
        if found is not None:
            return found
    # A message id we never recorded: the answer was lost. Match the in-doubt part.
    number = receipt.recipient
    numbers = {number, f"+{number.lstrip('+')}"}
    candidates = list((await session.scalars(
        select(SmsPart)
        .where(SmsPart.recipient.in_(numbers), SmsPart.state == PartState.sending,
               SmsPart.message_id.is_(None))
        .order_by(SmsPart.submitted_at, SmsPart.seq)
        .with_for_update()
    )).all())
    if receipt.user_reference is not None:
        for c in candidates:
            if c.user_reference == receipt.user_reference:
                return c
    return candidates[0] if candidates else None


async def _first(*waits: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


# ------------------------------------------------------------------ status


async def delivery_counts(session: AsyncSession) -> dict[str, int]:
    """SMS parts per state (``delivered``, ``failed``, ``accepted`` = awaiting receipt,
    ``sending`` = in doubt, ``new``)."""
    rows = await session.execute(select(SmsPart.state, func.count()).group_by(SmsPart.state))
    return {str(state): n for state, n in rows.all()}


@dataclass(frozen=True)
class FailedDelivery:
    recipient: str
    error: str
    at: datetime | None
    outbox_id: uuid.UUID


async def recent_failures(session: AsyncSession, *, limit: int = 20) -> list[FailedDelivery]:
    """The newest parts the SMSC refused or could not deliver, with its reason."""
    rows = await session.scalars(
        select(SmsPart).where(SmsPart.state == PartState.failed)
        .order_by(SmsPart.receipt_at.desc(), SmsPart.created_at.desc()).limit(limit))
    return [FailedDelivery(p.recipient, p.error, p.receipt_at or p.answered_at, p.outbox_id)
            for p in rows.all()]


async def delivery_of(session: AsyncSession, outbox_id: uuid.UUID) -> str:
    """One outbox SMS's delivery: ``delivered``, ``failed: <reason>``, ``awaiting receipt``,
    ``in doubt``, ``queued``."""
    parts = (await session.scalars(select(SmsPart).where(SmsPart.outbox_id == outbox_id))).all()
    if not parts:
        return "queued"
    failed = [p for p in parts if p.state == PartState.failed]
    if failed:
        return f"failed: {failed[0].error}"
    if all(p.state == PartState.delivered for p in parts):
        return "delivered"
    if any(p.state == PartState.sending for p in parts):
        return "in doubt"
    if all(p.state in DONE for p in parts):
        return "awaiting receipt"
    return "queued"
