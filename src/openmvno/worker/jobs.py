"""Scheduled jobs: naming, what each reports to ``openmvno jobs status``, and the record
of their runs in ``worker_jobs``.

A job is ``async def run_due(rt: Runtime) -> int``: at most one batch of due work in its
own short units of work, returning how many items it handled (0: nothing due). It is
registered with one line in :func:`openmvno.worker.runner.jobs`. A job may carry two
optional attributes, set with :func:`describe`:

- ``status(session, now) -> JobCounts``: how much is due now, claimed by a worker, and
  failing or dead (shown by ``openmvno jobs status``);
- ``retry(session) -> int``: make its failed items due again (``openmvno jobs retry``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.runtime import Runtime
from openmvno.worker.models import WorkerJob

log = logging.getLogger("openmvno.worker")

Job = Callable[[Runtime], Awaitable[int]]
StatusFn = Callable[[AsyncSession, datetime], Awaitable["JobCounts"]]
RetryFn = Callable[[AsyncSession], Awaitable[int]]
RECORD_EVERY = timedelta(seconds=30)
"""A worker writes a successful run of a job at most this often (a failure at once)."""


@dataclass(frozen=True, slots=True)
class JobCounts:
    due: int = 0
    """Items whose time has come and that no worker holds."""
    claimed: int = 0
    """Items a worker holds right now (its lease has not run out)."""
    failing: int = 0
    """Items that failed and wait for a retry, or gave up (dead)."""
    detail: str = ""


def job_name(job: Job) -> str:
    """The name shown and recorded for ``job`` (``module.function`` unless described)."""
    named = getattr(job, "job_name", None)
    if isinstance(named, str):
        return named
    return f"{job.__module__.removeprefix('openmvno.')}.{getattr(job, '__name__', 'job')}"


def describe(
    job: Job, *, name: str | None = None, status: StatusFn | None = None,
    retry: RetryFn | None = None,
) -> Job:
    """Attach a name and the optional ``status``/``retry`` hooks to ``job``; returns it."""
    target: Any = job
    if name is not None:
        target.job_name = name
    if status is not None:
        target.status = status
    if retry is not None:
        target.retry = retry
    return job


def _upsert(session: AsyncSession, values: dict[str, Any], update_values: dict[str, Any]) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(WorkerJob).values(values)
    return statement.on_conflict_do_update(index_elements=["name"], set_=update_values)


async def record_run(rt: Runtime, job: Job, handled: int, error: str | None) -> None:
    """Remember a run of ``job``: every failure at once, successes at most every
    :data:`RECORD_EVERY` per process (their items added up meanwhile), and the first
    success after a failure at once."""
    import uuid

    name = job_name(job)
    now = clock.now()
    seen: dict[str, tuple[datetime, bool, int]] = rt.extras.setdefault("_job_records", {})
    last = seen.get(name)
    if error is None and last is not None and not last[1] and now - last[0] < RECORD_EVERY:
        seen[name] = (last[0], False, last[2] + handled)  # written with the next record
        return
    handled += last[2] if last is not None else 0
    seen[name] = (now, error is not None, 0)
    t = WorkerJob.__table__.c
    if error is None:
        values = {"id": uuid.uuid4(), "name": name, "last_run_at": now, "last_ok_at": now,
                  "failures": 0, "handled": handled, "last_error": ""}
        changes = {"last_run_at": now, "last_ok_at": now, "failures": 0,
                   "handled": t.handled + handled}
    else:
        values = {"id": uuid.uuid4(), "name": name, "last_run_at": now, "last_failed_at": now,
                  "failures": 1, "handled": 0, "last_error": error[:500]}
        changes = {"last_run_at": now, "last_failed_at": now, "failures": t.failures + 1,
                   "last_error": error[:500]}
    try:
        async with unit_of_work(rt.sessions) as session:
            await session.execute(_upsert(session, values, changes))
    except Exception:
        log.exception("could not record a job run", extra={"job": name})


async def clear_failures(session: AsyncSession, name: str | None = None) -> int:
    """Reset the failure count of one job (or all)."""
    statement = update(WorkerJob).values(failures=0, last_error="")
    if name is not None:
        statement = statement.where(WorkerJob.name == name)
    result = await session.execute(statement.where(WorkerJob.failures > 0))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["Job", "JobCounts", "clear_failures", "describe", "job_name", "record_run"]
