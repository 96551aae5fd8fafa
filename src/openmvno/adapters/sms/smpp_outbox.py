"""SMS from the outbox over an SMPP bind, and delivery receipts back onto the outbox rows.

Run by ``openmvno smpp`` (one bind per process; any number of processes). Each process
claims due SMS rows with one conditional ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
LOCKED)`` plus a lease, so a row is submitted by exactly one process at a time; the
ordinary ``worker`` leaves SMS rows alone while ``sms_adapter=smpp``.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
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

log = logging.getLogger("openmvno.smpp")

CLAIM_SECONDS = 120
MAX_ATTEMPTS = 8
REDACTED = "[delivered; the one-time code is not kept]"
DONE = (PartState.accepted, PartState.delivered)
InboundHandler = Callable[[Inbound], Awaitable[None]]


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


async def claim(rt: Runtime, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due SMS rows for this process, in one statement."""
    now = clock.now()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.kind == OutboxKind.sms,
            OutboxMessage.state == OutboxState.pending,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage.id, OutboxMessage.recipient, OutboxMessage.body,
                   OutboxMessage.account_id, OutboxMessage.payload)
        .execution_options(synchronize_session=False)
    )
    async with unit_of_work(rt.sessions) as session:
        rows = (await session.execute(statement)).all()
    return [Claimed(r.id, r.recipient, r.body, r.account_id,
                    bool((r.payload or {}).get("sensitive"))) for r in rows]


class SmppSender:
    """One bind's sender: claims, submits, records answers and receipts."""

    def __init__(self, rt: Runtime, *, name: str | None = None,
                 on_inbound: InboundHandler | None = None) -> None:
        self.rt = rt
        self.name = (name or f"smpp-{secrets.token_hex(3)}")[:40]
        self.wake = asyncio.Event()
        self._on_inbound = on_inbound
        self.link = SmppLink(link_config(rt.settings, self.name),
                             on_receipt=self.on_receipt, on_inbound=self._inbound)
        self._busy: set[asyncio.Task[None]] = set()
        self._inflight: set[uuid.UUID] = set()
        self.submitted = 0

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
        limit = max(1, self.rt.settings.smpp_window) * 2
        while not stop.is_set():
            if not self.link.bound.is_set():
                await _first(stop.wait(), self.link.bound.wait())
                continue
            free = limit - len(self._busy)
            self.wake.clear()  # before the claim: a reply queued meanwhile wakes us again
            batch = await claim(self.rt, free) if free > 0 else []
            for message in batch:
                if message.id in self._inflight:
                    continue  # its lease ran out while this process still works on it
                self._inflight.add(message.id)
                task = asyncio.create_task(self._deliver_safely(message))
                self._busy.add(task)
                task.add_done_callback(self._busy.discard)
                task.add_done_callback(functools.partial(self._done, message.id))
            if not batch:
                await _first(stop.wait(), self.wake.wait(), asyncio.sleep(poll))

    def _done(self, outbox_id: uuid.UUID, _: object) -> None:
        self._inflight.discard(outbox_id)

    async def _inbound(self, message: Inbound) -> None:
        if self._on_inbound is None:
            log.warning("inbound SMS dropped: no handler")
            return
        await self._on_inbound(message)
        self.wake.set()  # the reply is in the outbox: send it now, not at the next poll

    # -------------------------------------------------------------- one message

    async def _deliver_safely(self, message: Claimed) -> None:
        try:
            await self.deliver(message)
        except Exception:
            log.exception("smpp delivery failed", extra={"outbox_id": str(message.id)})
            await self._release(message.id, retry_in=5.0, error="internal error", count=True)

    async def deliver(self, message: Claimed) -> None:
        settings = self.rt.settings
        in_doubt = timedelta(seconds=settings.smpp_in_doubt_seconds)
        async with unit_of_work(self.rt.sessions) as session:
            parts = await _parts(session, message)
            now = clock.now()
            todo = [p for p in parts if p.state == PartState.new or (
                p.state == PartState.sending and p.submitted_at is not None
                and p.submitted_at + in_doubt <= now)]
            for p in todo:
                p.state, p.submitted_at, p.bind = PartState.sending, now, self.name
                p.submits += 1
            plan = [(p.id, p.seq, p.concat_ref, p.user_reference) for p in todo]
        # The submits are recorded: a crash from here on leaves them in doubt, never resent
        # blindly.
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
                await self._unsent(p for p, *_ in plan[index + 1:])
                outcome = "link"
                break
            if answer.accepted:
                await self._accepted(part_id, answer.message_id)
                self.submitted += 1
                continue
            await self._unsent([part_id] + [p for p, *_ in plan[index + 1:]],
                               error=answer.description,
                               final=[] if answer.temporary else [part_id])
            outcome = "throttled" if answer.temporary else f"refused: {answer.description}"
            break
        await self._settle(message, outcome)

    async def _settle(self, message: Claimed, outcome: str | None) -> None:
        """Mark the outbox row after a round: sent once every part is in the SMSC's hands;
        otherwise due again when it makes sense (after a throttle pause, a reconnect, or
        the in-doubt wait)."""
        settings = self.rt.settings
        async with unit_of_work(self.rt.sessions) as session:
            row = await session.get(OutboxMessage, message.id, with_for_update=True)
            if row is None or row.state != OutboxState.pending:
                return
            parts = list((await session.scalars(
                select(SmsPart).where(SmsPart.outbox_id == message.id))).all())
            now = clock.now()
            row.claimed_until = None
            if outcome is not None and outcome.startswith("refused"):
                row.state, row.last_error = OutboxState.dead, f"SMSC {outcome}"[:500]
                return
            if all(p.state in DONE or (p.state == PartState.failed and p.receipt_at)
                   for p in parts):
                _sent(row, now)
                return
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

    async def _release(self, outbox_id: uuid.UUID, *, retry_in: float, error: str,
                       count: bool) -> None:
        async with unit_of_work(self.rt.sessions) as session:
            row = await session.get(OutboxMessage, outbox_id)
            if row is None or row.state != OutboxState.pending:
                return
            row.claimed_until = None
            row.last_error = error
            if count and row.attempts >= MAX_ATTEMPTS:
                row.state = OutboxState.dead
            row.next_attempt_at = clock.now() + timedelta(seconds=retry_in)

    async def _accepted(self, part_id: uuid.UUID, message_id: str) -> None:
        async with unit_of_work(self.rt.sessions) as session:
            part = await session.get(SmsPart, part_id, with_for_update=True)
            if part is None:
                return
            part.answered_at = clock.now()
            holder = None
            if message_id:
                holder = await session.scalar(select(SmsPart).where(
                    SmsPart.message_id == message_id, SmsPart.id != part_id).with_for_update())
            if holder is not None:
                # A receipt overtook this answer and was matched to a sibling in doubt: the
                # receipt is ours; the sibling goes back to waiting for its own.
                part.state, part.receipt_at, part.error = holder.state, holder.receipt_at, \
                    holder.error
                holder.message_id, holder.state = None, PartState.sending
                holder.receipt_at, holder.error = None, ""
                await session.flush()
                part.message_id = message_id
                return
            if part.message_id is None:
                part.message_id = message_id or None
            if part.state in (PartState.sending, PartState.new):
                part.state = PartState.accepted

    async def _unsent(self, part_ids: Any, *, error: str = "",
                      final: Sequence[uuid.UUID] = ()) -> None:
        ids = list(part_ids)
        if not ids:
            return
        async with unit_of_work(self.rt.sessions) as session:
            for part in (await session.scalars(
                    select(SmsPart).where(SmsPart.id.in_(ids)))).all():
                if part.state != PartState.sending:
                    continue
                part.state = PartState.failed if part.id in final else PartState.new
                part.error = error[:200]
                part.answered_at = clock.now() if error else part.answered_at

    # -------------------------------------------------------------- receipts

    async def on_receipt(self, receipt: Receipt) -> None:
        async with unit_of_work(self.rt.sessions) as session:
            part = await _part_for(session, receipt, self.link.answered.get(receipt.message_id))
            if part is None:
                log.warning("receipt for an unknown message", extra={"id": receipt.message_id})
                return
            now = clock.now()
            if part.message_id is None and receipt.message_id:
                part.message_id = receipt.message_id
            if receipt.final:
                part.state = PartState.delivered if receipt.delivered else PartState.failed
                part.error = "" if receipt.delivered else (
                    f"{receipt.stat} err:{receipt.error}" if receipt.error else receipt.stat)
                part.receipt_at = now
            elif part.state in (PartState.sending, PartState.new):
                part.state = PartState.accepted
            await session.flush()
            row = await session.get(OutboxMessage, part.outbox_id, with_for_update=True)
            if row is not None and row.state == OutboxState.pending:
                parts = (await session.scalars(
                    select(SmsPart).where(SmsPart.outbox_id == row.id))).all()
                if all(p.state in DONE or p.receipt_at for p in parts):
                    _sent(row, now)  # the reconciled in-doubt part was the last one


def _sent(row: OutboxMessage, now: datetime) -> None:
    row.state, row.sent_at, row.last_error, row.claimed_until = (
        OutboxState.sent, now, "", None)
    if (row.payload or {}).get("sensitive"):
        row.body = REDACTED  # every part is in the SMSC's hands: no resend needs the code


async def _parts(session: AsyncSession, message: Claimed) -> list[SmsPart]:
    parts = list((await session.scalars(
        select(SmsPart).where(SmsPart.outbox_id == message.id).order_by(SmsPart.seq))).all())
    if parts:
        return parts
    ref = secrets.randbelow(256)
    encoded = encode_text(message.body, ref)
    total = len(encoded.parts)
    parts = [
        SmsPart(outbox_id=message.id, account_id=message.account_id,
                recipient=message.recipient, seq=seq, total=total, concat_ref=ref,
                user_reference=secrets.randbelow(0xFFFF) + 1, state=PartState.new)
        for seq in range(1, total + 1)
    ]
    session.add_all(parts)
    await session.flush()
    return parts


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
