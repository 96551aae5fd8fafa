"""The worker: the outbox and every scheduled job. Any number of processes may run it:
due rows are claimed with one conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, see :mod:`openmvno.worker.claims`), outbox rows are delivered outside the
transaction, then marked sent or rescheduled with backoff; each job in :func:`jobs`
does one batch of its due work per round.

Stopping: :func:`run_forever` and :func:`drain` take an ``asyncio.Event``; once it is
set they finish the batch in hand (the outbox batch and the job running) and return,
so a SIGTERM never leaves a half-done batch behind (``openmvno worker`` and ``serve``
set it on SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, Table, bindparam, true, update

from openmvno import clock
from openmvno.adapters.registry import email_sender, sms_sender
from openmvno.db import Base, execute_alone, unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime
from openmvno.worker.claims import claim_due_objects
from openmvno.worker.jobs import Job, job_name, record_run

log = logging.getLogger("openmvno.worker")

Handler = Callable[[Runtime, OutboxMessage], Awaitable[str]]
MAX_ATTEMPTS = 8
CLAIM_SECONDS = 120


def handlers(rt: Runtime) -> dict[OutboxKind, Handler]:
    """Delivery function per outbox kind, built once per runtime (adapters included);
    other domains may add theirs in ``rt.extras["outbox_handlers"]`` before the first round."""
    built: dict[OutboxKind, Handler] | None = rt.extras.get("_outbox_table")
    if built is None:
        built = rt.extras["_outbox_table"] = _build_handlers(rt)
    return built


async def _card_detach(runtime: Runtime, m: OutboxMessage) -> str:
    from openmvno.payments.cards import detach_at_provider

    return await detach_at_provider(runtime, m)


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
        OutboxKind.card_detach: _card_detach,
        OutboxKind.line_state: _line_state,
        OutboxKind.line_barring: _line_barring,
    }
    table.update(rt.extras.get("outbox_handlers", {}))
    return table


async def _line_state(runtime: Runtime, m: OutboxMessage) -> str:
    from openmvno.lines.lifecycle import deliver

    return await deliver(runtime, m)


async def _line_barring(runtime: Runtime, m: OutboxMessage) -> str:
    from openmvno.usage.barring import deliver

    return await deliver(runtime, m)


def jobs(rt: Runtime) -> list[Job]:
    """Work polled every round beside the outbox; each returns how much it did."""
    found: list[Job] = [settle_stuck_payments, ratelimit.prune_job]
    from openmvno.renewals import scheduler as renewals

    found.append(renewals.run_due)
    from openmvno.payments import auto_topup, cards

    found += [auto_topup.run_due, cards.notify_expiring]
    from openmvno.lines import lifecycle  # after renewals: what renewed is not lapsed

    found.append(lifecycle.run_due)
    from openmvno.notifications import reminders  # expiry reminders (7, 3, 1 days)

    found.append(reminders.run_due)
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
OUTBOX: Table = Base.metadata.tables[OutboxMessage.__tablename__]
_SENT = (
    update(OUTBOX).where(OUTBOX.c.id == bindparam("m_id"))
    .values(state=OutboxState.sent, sent_at=bindparam("m_sent_at"), last_error="",
            claimed_until=None)
)
"""Marks one delivered message sent: built once (building it per message was half of a
worker's CPU per message), its id and time bound per execution."""
_SENT_REDACTED = _SENT.values(body=REDACTED)


def _stays_in_outbox(rt: Runtime, kind: OutboxKind) -> bool:
    """True for the development adapters, whose outbox row *is* the delivered message."""
    return (kind is OutboxKind.sms and rt.settings.sms_adapter == "outbox") or (
        kind is OutboxKind.email and rt.settings.email_adapter == "outbox"
    )


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 3600))


def _claimable_here(rt: Runtime) -> ColumnElement[bool]:
    """SMS over SMPP are sent by ``openmvno smpp`` (each its own bind), never by a worker."""
    if rt.settings.sms_adapter == "smpp":
        return OutboxMessage.kind != OutboxKind.sms
    return true()


async def claim(rt: Runtime, limit: int) -> list[OutboxMessage]:
    """Claim up to ``limit`` due rows for this process (one statement), oldest due first:
    two messages to one person go out in the order they were queued."""
    async with unit_of_work(rt.sessions) as session:
        claimed = await claim_due_objects(
            session, OutboxMessage,
            (OutboxMessage.state == OutboxState.pending)
            & (OutboxMessage.next_attempt_at <= clock.now())
            & _claimable_here(rt),
            [OutboxMessage.next_attempt_at], limit, timedelta(seconds=CLAIM_SECONDS),
            extra_values={"attempts": OutboxMessage.attempts + 1},
        )
    return sorted(claimed, key=lambda m: (m.next_attempt_at, m.created_at, m.id))


async def _finish(rt: Runtime, m: OutboxMessage, error: str | None) -> None:
    """Mark ``m`` sent (one UPDATE, its own transaction: on PostgreSQL one round trip) or,
    after a failure, reschedule it with backoff (or give it up as dead after
    :data:`MAX_ATTEMPTS`); the lease is given back either way."""
    if error is None:
        # a delivered one-time code is not kept at rest
        redact = m.payload.get("sensitive") and not _stays_in_outbox(rt, m.kind)
        await execute_alone(rt.sessions, _SENT_REDACTED if redact else _SENT,
                            {"m_id": m.id, "m_sent_at": clock.now()})
        return
    async with unit_of_work(rt.sessions) as session:
        failed = await session.get(OutboxMessage, m.id)
        if failed is None:
            return
        failed.claimed_until = None
        failed.last_error = error[:500]
        if failed.attempts >= MAX_ATTEMPTS:
            failed.state = OutboxState.dead
        else:
            failed.next_attempt_at = clock.now() + backoff(failed.attempts)


async def run_once(rt: Runtime, limit: int | None = None) -> int:
    """Deliver one batch of due messages and run each job once; returns the work done.
    A job that fails is logged and recorded (``openmvno jobs status``); the others run."""
    done, _ = await _round(rt, limit)
    return done


async def _round(rt: Runtime, limit: int | None = None) -> tuple[int, int]:
    """:func:`run_once`: the work done, and how many jobs failed."""
    done = await deliver_batch(rt, limit)
    failed = 0
    for job in jobs(rt):
        handled = await run_job(rt, job)
        if handled is None:
            failed += 1
        else:
            done += handled
    return done, failed


async def run_job(rt: Runtime, job: Job) -> int | None:
    """One batch of ``job``: the items handled, or ``None`` if it failed (logged and
    recorded, never raised)."""
    try:
        handled = await job(rt)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("job failed", extra={"job": job_name(job)})
        await record_run(rt, job, 0, f"{type(exc).__name__}: {exc}")
        return None
    await record_run(rt, job, handled, None)
    return handled


async def deliver_batch(rt: Runtime, limit: int | None = None) -> int:
    """Claim up to ``limit`` (``worker_batch``) due outbox rows, deliver each and mark it
    sent (or reschedule it); returns how many were claimed."""
    table = handlers(rt)
    batch = await claim(rt, limit or rt.settings.worker_batch)
    for m in batch:
        handler = table.get(m.kind)
        try:
            if handler is None:
                raise RuntimeError(f"no handler for {m.kind}")
            await handler(rt, m)
        except Exception as exc:  # noqa: BLE001 - any failure is retried with backoff
            log.warning("delivery failed", extra={"outbox_id": str(m.id), "kind": m.kind})
            await _finish(rt, m, f"{type(exc).__name__}: {exc}")
        else:
            await _finish(rt, m, None)
    return len(batch)


async def drain(
    rt: Runtime, max_rounds: int | None = 100, stop: asyncio.Event | None = None
) -> int:
    """Run rounds until nothing is due (tests, ``openmvno worker --once``; ``None``: no
    limit on rounds) or ``stop`` is set; returns the work done.

    A round that did nothing because a job failed is not "nothing due": it is run again
    after a pause (1, 2, 4 … seconds), up to :data:`DRAIN_RETRIES` times in a row, so a
    passing fault (a dropped connection) does not end ``--once`` with work left."""
    total = 0
    rounds = 0
    retries = 0
    while max_rounds is None or rounds < max_rounds:
        if stop is not None and stop.is_set():
            break
        n, failed = await _round(rt)
        rounds += 1
        total += n
        if n == 0 and failed and retries < DRAIN_RETRIES:
            await _pause(stop, 2.0**retries)
            retries += 1
            continue
        if n == 0:
            break
        retries = 0
    return total


DRAIN_RETRIES = 3
"""Rounds in a row :func:`drain` runs again after a job failed and nothing was done."""


async def _pause(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_forever(rt: Runtime, stop: asyncio.Event | None = None) -> None:
    """Rounds until ``stop`` is set (then the round in hand is finished first); a pause of
    ``worker_poll_seconds`` after a round that found nothing."""
    stop = stop or asyncio.Event()
    log.info("worker started")
    while not stop.is_set():
        try:
            n = await run_once(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker batch failed")
            n = 0
        if n == 0 and not stop.is_set():
            await _pause(stop, rt.settings.worker_poll_seconds)
    log.info("worker stopped")
