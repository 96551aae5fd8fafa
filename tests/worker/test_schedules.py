"""The worker's schedules: jobs run beside the outbox, claims never hand one row to two
workers, failures are visible and retryable, ``--once`` drains, SIGTERM/SIGINT finish
the batch in hand (real subprocesses, real SMTP on loopback)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from openmvno.cli import app as cli_app
from openmvno.db import unit_of_work
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from openmvno.worker import runner
from openmvno.worker.claims import claim_due, release, update_due
from openmvno.worker.jobs import JobCounts, describe, job_name
from openmvno.worker.models import WorkerJob
from tests.conftest import PG_URL, FrozenClock
from tests.worker.procs import start_command, start_worker, until, worker_env


async def _queue(rt: Runtime, n: int, prefix: str = "m") -> None:
    async with unit_of_work(rt.sessions) as session:
        for i in range(n):
            await notifications.send_email(
                session, to=f"user{i}@example.com", subject="Hello", body=f"body {i}",
                dedupe_key=f"{prefix}:{i}", account_id=None,
            )


async def _states(rt: Runtime) -> dict[str, int]:
    async with rt.sessions() as session:
        rows = await session.execute(
            select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
        )
        return {str(s): n for s, n in rows.all()}


# --- claims -------------------------------------------------------------------------


async def test_claims_take_each_due_row_once_until_the_lease_runs_out(
    rt: Runtime, frozen: FrozenClock
) -> None:
    await _queue(rt, 5)
    due = OutboxMessage.state == OutboxState.pending
    order = [OutboxMessage.dedupe_key]
    async with unit_of_work(rt.sessions) as session:
        first = await claim_due(session, OutboxMessage, due, order, 3, timedelta(minutes=2),
                                columns=[OutboxMessage.dedupe_key])
    async with unit_of_work(rt.sessions) as session:
        second = await claim_due(session, OutboxMessage, due, order, 3, timedelta(minutes=2),
                                 columns=[OutboxMessage.dedupe_key])
    async with unit_of_work(rt.sessions) as session:
        third = await claim_due(session, OutboxMessage, due, order, 3, timedelta(minutes=2))
    assert sorted(r.dedupe_key for r in first) == ["m:0", "m:1", "m:2"]
    assert sorted(r.dedupe_key for r in second) == ["m:3", "m:4"]
    assert third == []
    frozen.advance(minutes=3)  # a worker died holding them: the lease runs out
    async with unit_of_work(rt.sessions) as session:
        again = await claim_due(session, OutboxMessage, due, order, 10, timedelta(minutes=2))
        await release(session, OutboxMessage, [r.id for r in again[:2]])
    assert len(again) == 5
    async with unit_of_work(rt.sessions) as session:
        released = await claim_due(session, OutboxMessage, due, order, 10, timedelta(minutes=2))
    assert len(released) == 2


async def test_a_claim_takes_its_limit_even_where_the_table_looks_empty(rt: Runtime) -> None:
    """The planner, told by fresh statistics that the table is (nearly) empty, may run a
    plain ``IN (subquery … LIMIT n FOR UPDATE SKIP LOCKED)`` again for every row it
    updates — a claim of 4 then took all 6 due rows. The claim picks its rows once."""
    due = OutboxMessage.state == OutboxState.pending
    order = [OutboxMessage.dedupe_key]
    async with rt.engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE outbox")  # statistics of an empty table
    await _queue(rt, 6)
    async with unit_of_work(rt.sessions) as session:
        first = await claim_due(session, OutboxMessage, due, order, 4, timedelta(minutes=2))
    async with unit_of_work(rt.sessions) as session:
        second = await claim_due(session, OutboxMessage, due, order, 4, timedelta(minutes=2))
    assert sorted(r.dedupe_key for r in first) == ["m:0", "m:1", "m:2", "m:3"]
    assert sorted(r.dedupe_key for r in second) == ["m:4", "m:5"]
    async with unit_of_work(rt.sessions) as session:  # and a claim that changes rows at once
        moved = await update_due(session, OutboxMessage, due, order, 4,
                                 {"state": OutboxState.dead}, returning=[OutboxMessage.id])
    assert len(moved) == 4
    assert (await _states(rt))["pending"] == 2


async def test_the_outbox_sends_a_batch_oldest_due_first(
    rt: Runtime, frozen: FrozenClock
) -> None:
    """Queued last but due first: the claim picks by due time, and the batch goes out in
    that order (``UPDATE … RETURNING`` by itself hands rows back in table order)."""
    for i in reversed(range(4)):  # m:3 is queued first, m:0 last
        frozen.advance(seconds=1)
        await _queue(rt, 1, prefix=f"m{i}")
        async with unit_of_work(rt.sessions) as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.dedupe_key == f"m{i}:0")
                .values(next_attempt_at=frozen.now - timedelta(minutes=10 - i))
            )
    batch = await runner.claim(rt, 10)
    assert [m.dedupe_key for m in batch] == ["m0:0", "m1:0", "m2:0", "m3:0"]


@pytest.mark.skipif(not PG_URL, reason="SKIP LOCKED: two open transactions need PostgreSQL")
async def test_two_open_claims_on_postgresql_skip_each_others_rows(rt: Runtime) -> None:
    await _queue(rt, 6)
    due = OutboxMessage.state == OutboxState.pending
    order = [OutboxMessage.dedupe_key]
    async with rt.sessions() as a, rt.sessions() as b, a.begin():
        mine = await claim_due(a, OutboxMessage, due, order, 4, timedelta(minutes=2))
        # ``a`` has not committed: its rows are locked, ``b`` passes over them at once.
        async with b.begin():
            theirs = await claim_due(b, OutboxMessage, due, order, 4, timedelta(minutes=2))
    assert len(mine) == 4 and len(theirs) == 2
    assert not {r.id for r in mine} & {r.id for r in theirs}


# --- jobs ---------------------------------------------------------------------------


def _register(rt: Runtime, monkeypatch: pytest.MonkeyPatch, *extra: Any) -> None:
    original = runner.jobs

    def jobs(runtime: Runtime) -> list[Any]:
        return [*original(runtime), *extra]

    monkeypatch.setattr(runner, "jobs", jobs)


async def test_once_runs_every_job_until_nothing_is_due(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    backlog = {"left": 7}

    async def chew(_: Runtime) -> int:
        n = min(3, backlog["left"])
        backlog["left"] -= n
        return n

    _register(rt, monkeypatch, describe(chew, name="test.chew"))
    await _queue(rt, 2)
    done = await runner.drain(rt, max_rounds=None)
    assert backlog["left"] == 0
    assert done == 7 + 2
    assert (await _states(rt)) == {"sent": 2}


async def test_once_tries_a_failing_round_again_before_it_gives_up(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--once`` does not take "a job failed" for "nothing due": a fault that passes
    (twice here) leaves no work behind; one that stays ends the run after three tries."""
    pauses: list[float] = []

    async def pause(_: Any, seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(runner, "_pause", pause)
    state = {"left": 5, "faults": 2}

    async def flaky(_: Runtime) -> int:
        if state["faults"]:
            state["faults"] -= 1
            raise ConnectionError("the database refused the connection")
        n = min(2, state["left"])
        state["left"] -= n
        return n

    _register(rt, monkeypatch, describe(flaky, name="test.flaky"))
    assert await runner.drain(rt, max_rounds=None) == 5
    assert state["left"] == 0 and pauses == [1.0, 2.0]

    calls = {"n": 0}

    async def broken(_: Runtime) -> int:
        calls["n"] += 1
        raise ConnectionError("still down")

    pauses.clear()
    _register(rt, monkeypatch, describe(broken, name="test.broken"))
    assert await runner.drain(rt, max_rounds=None) == 0
    assert calls["n"] == runner.DRAIN_RETRIES + 1 and pauses == [1.0, 2.0, 4.0]


async def test_a_failing_job_is_recorded_shown_and_retried_while_the_others_run(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, frozen: FrozenClock
) -> None:
    calls = {"broken": 0}
    retried: list[str] = []

    async def broken(_: Runtime) -> int:
        calls["broken"] += 1
        raise RuntimeError("the network is down")

    async def broken_status(_: Any, __: Any) -> JobCounts:
        return JobCounts(due=4, claimed=1, failing=2)

    async def broken_retry(_: Any) -> int:
        retried.append("yes")
        return 2

    job = describe(broken, name="test.broken", status=broken_status, retry=broken_retry)
    _register(rt, monkeypatch, job)
    await _queue(rt, 1)
    assert await runner.run_once(rt) == 1  # the outbox still delivered
    assert calls["broken"] == 1
    async with rt.sessions() as session:
        row = await session.scalar(select(WorkerJob).where(WorkerJob.name == "test.broken"))
    assert row is not None and row.failures == 1
    assert row.last_error == "RuntimeError: the network is down"

    from openmvno.worker import status as job_status

    async with rt.sessions() as session:
        shown = await job_status.status(session, runner.jobs(rt))
    mine = next(j for j in shown.jobs if j.name == "test.broken")
    assert mine.counts == JobCounts(due=4, claimed=1, failing=2)
    assert mine.failures == 1 and "network is down" in mine.last_error
    assert {j.name for j in shown.jobs} >= {job_name(runner.settle_stuck_payments)}

    async with unit_of_work(rt.sessions) as session:
        assert await job_status.retry(session, runner.jobs(rt), job="test.broken") == (0, 2)
    assert retried == ["yes"]
    async with rt.sessions() as session:
        row = await session.scalar(select(WorkerJob).where(WorkerJob.name == "test.broken"))
    assert row is not None and row.failures == 0


async def test_jobs_status_and_retry_show_and_requeue_dead_messages_by_kind(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _queue(rt, 2, prefix="dead")
    async with unit_of_work(rt.sessions) as session:
        await notifications.enqueue(
            session, kind=OutboxKind.provision, dedupe_key="prov:1", recipient="+8613800000001",
            payload={"order_id": str(uuid.uuid4())},
        )
        for m in (await session.scalars(select(OutboxMessage))).all():
            m.state = OutboxState.dead
            m.attempts = 8
            m.last_error = "SMTPConnectError: refused" if m.kind == OutboxKind.email else "gone"
    env = {"OPENMVNO_DATABASE_URL": rt.settings.database_url,
           "OPENMVNO_DATA_DIR": str(rt.settings.data_dir), "OPENMVNO_ENVIRONMENT": "development",
           "OPENMVNO_SECRET_KEY": rt.settings.secret_key.get_secret_value(),
           "COLUMNS": "200"}
    shown = await asyncio.to_thread(CliRunner().invoke, cli_app, ["jobs", "status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "dead email to user0@example.com (8 attempts" in shown.output
    assert "SMTPConnectError: refused" in shown.output
    assert "lines.lifecycle" in shown.output or "settle_stuck_payments" in shown.output
    again = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["jobs", "retry", "--kind", "email"], env=env
    )
    assert again.exit_code == 0, again.output
    assert "requeued 2 message(s)" in again.output
    assert (await _states(rt)) == {"pending": 2, "dead": 1}
    bad = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["jobs", "retry", "--kind", "pigeon"], env=env
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output


# --- stopping: real processes -------------------------------------------------------


class HeldInbox:
    """An SMTP server whose first message is held until the test lets it go."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.first_arrived = threading.Event()
        self.let_go = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if not self.messages:
            self.first_arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, self.let_go.wait, 60)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def held_smtp() -> Iterator[tuple[HeldInbox, int]]:
    inbox = HeldInbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    inbox.let_go.set()
    controller.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_mid_batch_finishes_the_batch_then_stops(
    rt: Runtime, held_smtp: tuple[HeldInbox, int], tmp_path: Path, sig: signal.Signals
) -> None:
    inbox, port = held_smtp
    await _queue(rt, 5)
    env = worker_env(rt.settings, OPENMVNO_EMAIL_ADAPTER="smtp", OPENMVNO_SMTP_PORT=str(port),
                     OPENMVNO_WORKER_BATCH="3")
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        await until(inbox.first_arrived.is_set, "the first message reached SMTP", proc, log)
        os.kill(proc.pid, sig)  # mid-batch: message 1 of 3 is in the SMTP server's hands
        inbox.let_go.set()
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    assert len(inbox.messages) == 3  # the batch in hand was finished, nothing more started
    assert (await _states(rt)) == {"sent": 3, "pending": 2}
    async with rt.sessions() as session:
        held = await session.scalar(
            select(func.count()).where(OutboxMessage.claimed_until.is_not(None))
        )
    assert held == 0  # nothing left claimed: another worker takes the rest at once


async def test_serve_stops_its_embedded_worker_after_the_batch_in_hand(
    rt: Runtime, held_smtp: tuple[HeldInbox, int], tmp_path: Path
) -> None:
    inbox, port = held_smtp
    await _queue(rt, 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        http_port = int(s.getsockname()[1])
    env = worker_env(rt.settings, OPENMVNO_EMAIL_ADAPTER="smtp", OPENMVNO_SMTP_PORT=str(port),
                     OPENMVNO_WORKER_BATCH="3")
    log = tmp_path / "serve.log"
    proc = start_command(env, log, "serve", "--port", str(http_port))
    try:
        await until(inbox.first_arrived.is_set, "the first message reached SMTP", proc, log)
        os.kill(proc.pid, signal.SIGTERM)
        inbox.let_go.set()
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # uvicorn shuts down cleanly, then re-raises the signal it caught (exit -SIGTERM).
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "worker stopped" in log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert len(inbox.messages) == 3
    assert (await _states(rt)) == {"sent": 3, "pending": 2}
