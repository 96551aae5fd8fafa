"""What ``openmvno jobs status`` shows and what ``openmvno jobs retry`` does: per job
(due now, claimed, failing or dead, its last run and error) and the outbox per kind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.worker.jobs import Job, JobCounts, clear_failures, job_name
from openmvno.worker.models import WorkerJob


@dataclass(frozen=True, slots=True)
class JobReport:
    name: str
    counts: JobCounts | None
    last_run_at: datetime | None = None
    last_ok_at: datetime | None = None
    failures: int = 0
    handled: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class OutboxReport:
    kind: str
    due: int = 0
    waiting: int = 0
    """Pending but not due yet (a retry after backoff, a notice held for quiet hours)."""
    claimed: int = 0
    sent: int = 0
    dead: int = 0


@dataclass(frozen=True, slots=True)
class DeadMessage:
    kind: str
    recipient: str
    attempts: int
    last_error: str
    created_at: datetime


@dataclass(slots=True)
class Status:
    jobs: list[JobReport] = field(default_factory=list)
    outbox: list[OutboxReport] = field(default_factory=list)
    dead: list[DeadMessage] = field(default_factory=list)


async def status(
    session: AsyncSession, registered: Sequence[Job], *, dead_limit: int = 20
) -> Status:
    now = clock.now()
    records = {
        r.name: r for r in (await session.scalars(select(WorkerJob))).all()
    }
    found = Status()
    for job in registered:
        name = job_name(job)
        hook = getattr(job, "status", None)
        counts = await hook(session, now) if hook is not None else None
        r = records.get(name)
        found.jobs.append(JobReport(
            name=name, counts=counts,
            last_run_at=r.last_run_at if r else None, last_ok_at=r.last_ok_at if r else None,
            failures=r.failures if r else 0, handled=r.handled if r else 0,
            last_error=r.last_error if r else "",
        ))
    o = OutboxMessage
    pending = o.state == OutboxState.pending
    held = and_(o.claimed_until.is_not(None), o.claimed_until >= now)
    rows = await session.execute(
        select(
            o.kind,
            func.count().filter(pending, o.next_attempt_at <= now, ~held),
            func.count().filter(pending, o.next_attempt_at > now, ~held),
            func.count().filter(pending, held),
            func.count().filter(o.state == OutboxState.sent),
            func.count().filter(o.state == OutboxState.dead),
        ).group_by(o.kind)
    )
    for kind, due, waiting, claimed, sent, dead in rows.all():
        found.outbox.append(OutboxReport(str(kind), due, waiting, claimed, sent, dead))
    found.outbox.sort(key=lambda r: r.kind)
    dead_rows = await session.scalars(
        select(o).where(o.state == OutboxState.dead).order_by(o.created_at.desc(), o.id.desc())
        .limit(dead_limit)
    )
    found.dead = [
        DeadMessage(str(m.kind), m.recipient, m.attempts, m.last_error, m.created_at)
        for m in dead_rows.all()
    ]
    return found


async def retry(
    session: AsyncSession, registered: Sequence[Job], *, kind: OutboxKind | None = None,
    job: str | None = None,
) -> tuple[int, int]:
    """Dead outbox messages (of ``kind``, or all) due again with a fresh set of attempts,
    and the failed items of each job (or of the job named ``job``) due again; returns
    (messages requeued, job items retried)."""
    messages = 0
    if job is None:
        statement = (
            update(OutboxMessage)
            .where(OutboxMessage.state == OutboxState.dead)
            .values(state=OutboxState.pending, attempts=0, next_attempt_at=clock.now(),
                    claimed_until=None)
        )
        if kind is not None:
            statement = statement.where(OutboxMessage.kind == kind)
        result = await session.execute(statement)
        messages = int(getattr(result, "rowcount", 0) or 0)
    items = 0
    if kind is None:
        for registered_job in registered:
            name = job_name(registered_job)
            if job is not None and name != job:
                continue
            hook = getattr(registered_job, "retry", None)
            if hook is not None:
                items += await hook(session)
            await clear_failures(session, name)
    return messages, items


__all__ = ["DeadMessage", "JobReport", "OutboxReport", "Status", "retry", "status"]
