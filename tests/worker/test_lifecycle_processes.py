"""The lifecycle job in real worker processes: ``kill -9`` in the middle of a batch and a
restart do every move exactly once (ledger check clean); several workers on PostgreSQL
never take the same line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, EntryReason
from openmvno.lines import lifecycle
from openmvno.lines.models import Line, LineEvent, LineKind, LineState, NumberQuarantine
from openmvno.notifications.models import Notice, OutboxKind, OutboxMessage
from openmvno.runtime import Runtime
from tests.conftest import PG_URL
from tests.orders.helpers import seed_plans, subscriber
from tests.worker.procs import start_worker, until, worker_env


async def _due_lines(rt: Runtime, account_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    """``n`` lines on plan M30 that expired an hour ago or more (line i before line i+1),
    each with its plan's buckets still full (they expire with the line)."""
    now = datetime.now(UTC)
    ids = []
    async with unit_of_work(rt.sessions) as s:
        plan = await s.scalar(select(Plan).where(Plan.code == "M30"))
        assert plan is not None
        for i in range(n):
            expires = now - timedelta(hours=1, minutes=n - i)
            line = Line(kind=LineKind.sim, iccid=f"89860099{i:011d}", msisdn=f"+86172{i:08d}",
                        account_id=account_id, state=LineState.active, expires_at=expires,
                        plan_id=plan.id)
            s.add(line)
            await s.flush()
            await ledger.grant_plan(
                s, account_id=account_id, line_id=line.id, plan=plan, order_id=None,
                valid_from=expires - timedelta(days=30), valid_until=expires,
                key=f"test-grant:{line.id}",
            )
            ids.append(line.id)
    return ids


async def _ledger_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from openmvno.cli import app; app()", "ledger", "check"],
        env=env, capture_output=True, text=True, timeout=120,
    )


async def _run_once(env: dict[str, str], log: Path) -> int:
    proc = start_worker(env, log, "--once")
    return await asyncio.to_thread(proc.wait, 120)


async def _assert_each_move_once(rt: Runtime, ids: list[uuid.UUID], moves: list[str]) -> None:
    async with rt.sessions() as s:
        states = Counter((await s.scalars(select(Line.state).where(Line.id.in_(ids)))).all())
        events = Counter((await s.execute(
            select(LineEvent.line_id, LineEvent.to_state)
            .where(LineEvent.line_id.in_(ids), LineEvent.event == "state")
        )).all())
        jobs = Counter((await s.scalars(
            select(OutboxMessage.dedupe_key).where(OutboxMessage.kind == OutboxKind.line_state)
        )).all())
        notices = Counter((await s.execute(
            select(Notice.line_id, Notice.event).where(Notice.line_id.in_(ids))
        )).all())
        expired = await s.scalar(
            select(func.count()).select_from(BalanceEntry)
            .where(BalanceEntry.reason == EntryReason.expire)
        )
    final = {"grace": LineState.grace, "suspend": LineState.suspended,
             "terminate": LineState.terminated}[moves[-1]]
    assert states == {final: len(ids)}
    assert set(events.values()) == {1} and len(events) == len(ids) * len(moves)
    assert len(jobs) == len(ids) * len(moves)
    notice_of = {"grace": "grace_started", "suspend": "suspended", "terminate": "terminated"}
    assert notices == Counter({(i, notice_of[m]): 1 for i in ids for m in moves})
    assert expired == len(ids) * 3  # data, voice and SMS of each line's plan, once each


@pytest.fixture
async def lapsed(client: httpx.AsyncClient, rt: Runtime) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await seed_plans(rt)
    _, me = await subscriber(client)
    return me, await _due_lines(rt, me, 40)


@pytest.mark.skipif(not PG_URL, reason="a lock held inside the batch needs PostgreSQL")
async def test_kill_9_inside_a_lifecycle_batch_then_a_restart_does_each_move_once(
    rt: Runtime, lapsed: tuple[uuid.UUID, list[uuid.UUID]], tmp_path: Path
) -> None:
    _, ids = lapsed
    first = ids[0]  # the earliest expiry: in the first batch
    async with rt.sessions() as s:
        expires = await s.scalar(select(Line.expires_at).where(Line.id == first))
    assert expires is not None
    key = f"line-state:minimal:{first}:{lifecycle.period(expires)}"
    env = worker_env(rt.settings, OPENMVNO_LIFECYCLE_BATCH="15")
    log = tmp_path / "worker.log"
    blocker = await rt.engine.connect()
    tx = await blocker.begin()
    # The same network job, not committed: the worker's INSERT of its batch's jobs waits
    # on it — after its UPDATE moved 15 lines and its line events went in.
    await blocker.execute(
        OutboxMessage.__table__.insert().values(
            id=uuid.uuid4(), kind=OutboxKind.line_state, dedupe_key=key, recipient="x",
            subject="", body="", payload={}, state="pending", attempts=0,
            next_attempt_at=datetime.now(UTC), last_error="", created_at=datetime.now(UTC),
        )
    )
    proc = start_worker(env, log)
    try:
        async def waiting() -> bool:
            async with rt.engine.connect() as c:
                n = await c.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE 'INSERT INTO outbox%' AND datname = current_database()"
                ))
                return bool(n)

        await until(waiting, "the worker waited inside its batch", proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        await tx.rollback()
        await blocker.close()
    async with rt.sessions() as s:  # the killed batch left nothing behind
        moved = await s.scalar(select(func.count()).where(Line.state != LineState.active,
                                                          Line.id.in_(ids)))
        logged = await s.scalar(select(func.count()).select_from(LineEvent))
    assert moved == 0 and logged == 0
    assert await _run_once(env, log) == 0, log.read_text()
    await _assert_each_move_once(rt, ids, ["grace"])
    checked = await _ledger_check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_kill_9_while_the_worker_moves_lines_then_a_restart_does_each_move_once(
    rt: Runtime, lapsed: tuple[uuid.UUID, list[uuid.UUID]], tmp_path: Path
) -> None:
    """Batches of one line: killed once the first lines moved (wherever it was then: inside
    a batch, between two, or done), the restart leaves every move done exactly once."""
    _, ids = lapsed
    env = worker_env(rt.settings, OPENMVNO_LIFECYCLE_BATCH="1", OPENMVNO_GRACE_DAYS="0")
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        async def some_moved() -> bool:
            async with rt.sessions() as s:
                return bool(await s.scalar(
                    select(func.count()).where(Line.state != LineState.active)
                ))

        await until(some_moved, "lines started to move", proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await _run_once(env, log) == 0, log.read_text()
    await _assert_each_move_once(rt, ids, ["grace", "suspend"])
    checked = await _ledger_check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(not PG_URL, reason="several concurrent writers need PostgreSQL")
async def test_three_workers_on_postgresql_never_take_the_same_line(
    client: httpx.AsyncClient, rt: Runtime, tmp_path: Path
) -> None:
    await seed_plans(rt)
    _, me = await subscriber(client)
    ids = await _due_lines(rt, me, 240)
    env = worker_env(rt.settings, OPENMVNO_LIFECYCLE_BATCH="10", OPENMVNO_GRACE_DAYS="0",
                     OPENMVNO_SUSPENSION_DAYS="0")
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    procs = [start_worker(env, log, "--once") for log in logs]
    codes = [await asyncio.to_thread(p.wait, 300) for p in procs]
    assert codes == [0, 0, 0], [log.read_text() for log in logs]
    await _assert_each_move_once(rt, ids, ["grace", "suspend", "terminate"])
    async with rt.sessions() as s:
        held = await s.scalar(select(func.count()).select_from(NumberQuarantine))
    assert held == len(ids)
    checked = await _ledger_check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
