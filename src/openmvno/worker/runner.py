"""The outbox worker. Any number of processes may run it: due rows are claimed
with one conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), delivered
outside the transaction, then marked sent or rescheduled with backoff."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import or_, select, update

from openmvno import clock
from openmvno.adapters.registry import email_sender, sms_sender
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.worker")

Handler = Callable[[Runtime, OutboxMessage], Awaitable[str]]
Job = Callable[[Runtime], Awaitable[int]]
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120


def handlers(rt: Runtime) -> dict[OutboxKind, Handler]:
    """Delivery function per outbox kind, built once per runtime (adapters included);
    other domains may add theirs in ``rt.extras["outbox_handlers"]`` before the first round."""
    built: dict[OutboxKind, Handler] | None = rt.extras.get("_outbox_table")
    if built is None:
        built = rt.extras["_outbox_table"] = _build_handlers(rt)
    return built


def _build_handlers(rt: Runtime) -> dict[OutboxKind, Handler]:
    sms = sms_sender(rt.settings)
    email = email_sender(rt.settings)

    async def send_sms(_: Runtime, m: OutboxMessage) -> str:
        return await sms.send(to=m.recipient, body=m.body, dedupe_key=m.dedupe_key)

    async def send_email(_: Runtime, m: OutboxMessage) -> str:
        return await email.send(
            to=m.recipient, subject=m.subject, body=m.body, dedupe_key=m.dedupe_key,
            language=m.payload.get("language"),
        )

    async def provision(runtime: Runtime, m: OutboxMessage) -> str:
        from openmvno.orders.service import provision as provision_order

        return await provision_order(runtime, m)

    async def refund(runtime: Runtime, m: OutboxMessage) -> str:
        from openmvno.payments.refunds import deliver

        return await deliver(runtime, m)

    async def cancel_payment(runtime: Runtime, m: OutboxMessage) -> str:
        from openmvno.payments.service import cancel_at_provider

        return await cancel_at_provider(runtime, m)

    table: dict[OutboxKind, Handler] = {
        OutboxKind.sms: send_sms,
        OutboxKind.email: send_email,
        OutboxKind.provision: provision,
        OutboxKind.refund: refund,
        OutboxKind.payment_cancel: cancel_payment,
    }
    table.update(rt.extras.get("outbox_handlers", {}))
    return table


def jobs(rt: Runtime) -> list[Job]:
    """Work polled every round beside the outbox; each returns how much it did."""
    found: list[Job] = [settle_stuck_payments, ratelimit.prune_job]
    from openmvno.renewals import scheduler as renewals

    found.append(renewals.run_due)
    if rt.settings.payment_provider == "sandbox":
        from openmvno.adapters.payments.sandbox import deliver_due_webhooks

        found.append(deliver_due_webhooks)
    return found


async def settle_stuck_payments(rt: Runtime) -> int:
    """The payments janitor (stuck attempts, then refunds the provider reported as
    pending), at most once a minute per process."""
    from openmvno.payments.janitor import settle_stuck
    from openmvno.payments.refunds import follow_pending

    now = clock.now()
    last = rt.extras.get("janitor_ran_at")
    if last is not None and now - last < timedelta(minutes=1):
        return 0
    rt.extras["janitor_ran_at"] = now
    settled = await settle_stuck(
        rt, older_than=timedelta(minutes=rt.settings.payment_stale_minutes)
    )
    return settled + await follow_pending(rt, older_than=timedelta(minutes=1))


REDACTED = "[delivered; the one-time code is not kept]"


def _stays_in_outbox(rt: Runtime, kind: OutboxKind) -> bool:
    """True for the development adapters, whose outbox row *is* the delivered message."""
    return (kind is OutboxKind.sms and rt.settings.sms_adapter == "outbox") or (
        kind is OutboxKind.email and rt.settings.email_adapter == "outbox"
    )


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 3600))


async def claim(rt: Runtime, limit: int) -> list[OutboxMessage]:
    """Claim up to ``limit`` due rows for this process."""
    now = clock.now()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.state == OutboxState.pending,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with unit_of_work(rt.sessions) as session:
        ids = list((await session.scalars(due)).all())
        if not ids:
            return []
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
                attempts=OutboxMessage.attempts + 1,
            )
        )
        rows = await session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids)))
        return list(rows.all())


async def _finish(rt: Runtime, message_id: uuid.UUID, error: str | None) -> None:
    async with unit_of_work(rt.sessions) as session:
        m = await session.get(OutboxMessage, message_id)
        if m is None:
            return
        m.claimed_until = None
        if error is None:
            m.state = OutboxState.sent
            m.sent_at = clock.now()
            m.last_error = ""
            if m.payload.get("sensitive") and not _stays_in_outbox(rt, m.kind):
                m.body = REDACTED  # a delivered one-time code is not kept at rest
        else:
            m.last_error = error[:500]
            if m.attempts >= MAX_ATTEMPTS:
                m.state = OutboxState.dead
            else:
                m.next_attempt_at = clock.now() + backoff(m.attempts)


async def run_once(rt: Runtime, limit: int | None = None) -> int:
    """Deliver one batch of due messages and run the polled jobs; returns the work done."""
    done = await _deliver_batch(rt, limit or rt.settings.worker_batch)
    for job in jobs(rt):
        done += await job(rt)
    return done


async def _deliver_batch(rt: Runtime, limit: int) -> int:
    table = handlers(rt)
    batch = await claim(rt, limit)
    for m in batch:
        handler = table.get(m.kind)
        try:
            if handler is None:
                raise RuntimeError(f"no handler for {m.kind}")
            await handler(rt, m)
        except Exception as exc:  # noqa: BLE001 - any failure is retried with backoff
            log.warning("delivery failed", extra={"outbox_id": str(m.id), "kind": m.kind})
            await _finish(rt, m.id, f"{type(exc).__name__}: {exc}")
        else:
            await _finish(rt, m.id, None)
    return len(batch)


async def drain(rt: Runtime, max_rounds: int = 100) -> int:
    """Run batches until nothing is due (tests, CLI ``worker --once``)."""
    total = 0
    for _ in range(max_rounds):
        n = await run_once(rt)
        total += n
        if n == 0:
            break
    return total


async def run_forever(rt: Runtime) -> None:
    log.info("worker started")
    while True:
        try:
            n = await run_once(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker batch failed")
            n = 0
        if n == 0:
            await asyncio.sleep(rt.settings.worker_poll_seconds)
