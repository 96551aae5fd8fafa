"""``kill -9`` a real ``openmvno worker`` in the middle of a renewal batch, start
``openmvno worker --once`` again: every due auto-renewal is done exactly once (one
renewal run, one order, the plan's buckets once, the expiry extended once), every saved
sandbox card is charged once at the sandbox, every wallet debited once, one
``renewal_succeeded`` notice per line, and ``openmvno ledger check`` is clean.

Half the lines renew from the wallet, half from a saved sandbox card (saved through the
hosted page, as a subscriber does). The killed worker's claims stay with it until their
lease passes (``renewal_claim_seconds``, short here): the restart waits for that (a
condition in the database, not a pause), then takes the lines again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, text

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.adapters.payments.sandbox_models import SandboxCharge
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.notifications.models import Notice
from openmvno.orders.models import Order, OrderState
from openmvno.payments.cards import SavedCard
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.receipts.models import Receipt
from openmvno.renewals import schedule
from openmvno.renewals.models import AutoRenewSetting, Funding
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from tests.conftest import PG_URL
from tests.payments.card_helpers import SAVES, save_card
from tests.worker.procs import start_worker, until, worker_env

N = 300
"""Due lines: even ones renew from the wallet, odd ones from a saved sandbox card."""
PRICE = 3000
WALLET = 5000
LEASE_SECONDS = 2
"""The claim lease of both workers: the restart takes the killed worker's lines once it
has passed (it is never a timing the assertions depend on)."""


@dataclass
class Seeded:
    lines: list[uuid.UUID]
    accounts: list[uuid.UUID]
    expiry: datetime
    period: str
    cards: dict[uuid.UUID, str]
    """Card-funded line → its sandbox card token."""

    def wallet_line(self, i: int) -> bool:
        return i % 2 == 0


async def _seed(rt: Runtime, web: httpx.AsyncClient) -> Seeded:
    """N subscribers, each with a wallet of WALLET and one active line on a 30-day plan
    expiring in 12 hours with auto-renew on (due now, line i before line i+1); odd lines
    pay with a sandbox card saved through the hosted page, with no wallet fallback."""
    now = clock.now()
    expiry = (now + timedelta(hours=12)).replace(microsecond=0)
    period = schedule.period_key(expiry)
    plan_id = uuid.uuid4()
    accounts = [uuid.uuid4() for _ in range(N)]
    lines = [uuid.uuid4() for _ in range(N)]
    account_rows, line_rows, bucket_rows, entry_rows = [], [], [], []
    for i, (account_id, line_id) in enumerate(zip(accounts, lines, strict=True)):
        bucket_id = uuid.uuid4()
        account_rows.append({
            "id": account_id, "role": "subscriber", "name": f"Kill Nine {i}",
            "phone": f"+86136{i:08d}", "email": None, "password_hash": "x",
            "language": "zh-CN" if i % 3 else "en", "verified_at": now, "failed_logins": 0,
            "active": True, "created_at": now, "updated_at": now,
        })
        line_rows.append({
            "id": line_id, "kind": LineKind.esim, "iccid": f"8986097{i:012d}",
            "msisdn": f"+86176{i:08d}", "account_id": account_id, "state": LineState.active,
            "plan_id": plan_id, "expires_at": expiry, "auto_renew": True, "activated_at": now,
            "state_changed_at": now, "created_at": now, "updated_at": now,
        })
        bucket_rows.append({
            "id": bucket_id, "account_id": account_id, "line_id": None,
            "kind": BucketKind.money, "currency": "CNY", "valid_from": now, "priority": 100,
            "initial": 0, "remaining": 0, "reserved": 0, "created_at": now, "updated_at": now,
        })
        entry_rows.append({
            "bucket_id": bucket_id, "account_id": account_id, "delta": WALLET,
            "reason": EntryReason.topup, "idempotency_key": f"kill9-fund:{i}", "memo": "",
            "created_at": now,
        })
    async with unit_of_work(rt.sessions) as s:
        s.add(Plan(id=plan_id, code="K9M30", kind=PlanKind.mixed, name_zh="续费30天",
                   name_en="Renew 30 days", price_minor=PRICE, currency="CNY",
                   validity_days=30, data_bytes=5 * 1024**3, voice_seconds=3000,
                   sms_count=50))
        await s.flush()
        for model, rows in ((Account, account_rows), (Line, line_rows),
                            (Bucket, bucket_rows), (BalanceEntry, entry_rows)):
            await s.execute(insert(model), rows)

    card_of: dict[uuid.UUID, uuid.UUID] = {}
    for i in range(1, N, 2):
        setup = await save_card(rt, web, accounts[i], SAVES)
        assert setup.card_id is not None
        card_of[lines[i]] = setup.card_id

    settings = []
    for i, (account_id, line_id) in enumerate(zip(accounts, lines, strict=True)):
        wallet = i % 2 == 0
        settings.append({
            "id": uuid.uuid4(), "line_id": line_id, "account_id": account_id,
            "enabled": True, "funding": Funding.wallet if wallet else Funding.card,
            "card_id": None if wallet else card_of[line_id], "wallet_fallback": wallet,
            "period_key": period, "attempts": 0,
            "next_attempt_at": now - timedelta(seconds=N - i), "last_failure": "",
            "waiting_for_wallet": False, "created_at": now, "updated_at": now,
        })
    async with unit_of_work(rt.sessions) as s:
        await s.execute(insert(AutoRenewSetting), settings)
        tokens = {r[0]: r[1] for r in (await s.execute(
            select(SavedCard.id, SavedCard.card_ref).where(SavedCard.id.in_(card_of.values()))
        )).all()}
    assert len(tokens) == N // 2
    return Seeded(lines=lines, accounts=accounts, expiry=expiry, period=period,
                  cards={line: tokens[card] for line, card in card_of.items()})


def _env(rt: Runtime, batch: int) -> dict[str, str]:
    return worker_env(rt.settings, OPENMVNO_RENEWAL_BATCH=str(batch),
                      OPENMVNO_RENEWAL_CLAIM_SECONDS=str(LEASE_SECONDS))


async def _counts(rt: Runtime) -> tuple[int, int]:
    """(renewal runs, captured sandbox charges) as committed now."""
    async with rt.sessions() as s:
        runs = await s.scalar(select(func.count()).select_from(RenewalRun))
        captured = await s.scalar(select(func.count()).select_from(SandboxCharge)
                                  .where(SandboxCharge.status == "succeeded"))
    return int(runs or 0), int(captured or 0)


async def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL


async def _restart(rt: Runtime, env: dict[str, str], log: Path) -> None:
    """Once the killed worker's leases have passed, ``openmvno worker --once``."""
    async def leases_passed() -> bool:
        async with rt.sessions() as s:
            held = await s.scalar(select(func.count()).select_from(AutoRenewSetting)
                                  .where(AutoRenewSetting.claimed_until >= clock.now()))
        return not held

    await until(leases_passed, "the killed worker's leases passed")
    proc = start_worker(env, log, "--once")
    code = await asyncio.to_thread(proc.wait, 300)
    assert code == 0, (await asyncio.to_thread(log.read_text))[-5000:]


async def _ledger_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "from openmvno.cli import app; app()", "ledger", "check"],
        env=env, capture_output=True, text=True, timeout=120,
    )


async def _assert_each_renewed_once(rt: Runtime, seeded: Seeded, env: dict[str, str]) -> None:
    ids = seeded.lines
    wallet_lines = [line for i, line in enumerate(ids) if seeded.wallet_line(i)]
    card_lines = [line for i, line in enumerate(ids) if not seeded.wallet_line(i)]
    async with rt.sessions() as s:
        runs = Counter(tuple(r) for r in (await s.execute(
            select(RenewalRun.line_id, RenewalRun.period_key, RenewalRun.funding)
        )).all())
        orders = Counter(tuple(r) for r in (await s.execute(
            select(Order.line_id, Order.state).where(Order.idempotency_scope == "renewal")
        )).all())
        grants = Counter(tuple(r) for r in (await s.execute(
            select(Bucket.line_id, Bucket.kind, Bucket.initial, Bucket.remaining,
                   Bucket.valid_until)
            .where(Bucket.kind != BucketKind.money)
        )).all())
        expiries = Counter((await s.scalars(select(Line.expires_at))).all())
        captures = Counter(tuple(r) for r in (await s.execute(
            select(SandboxCharge.token, SandboxCharge.status, SandboxCharge.amount_minor)
        )).all())
        attempts = Counter(tuple(r) for r in (await s.execute(
            select(PaymentAttempt.idempotency_key, PaymentAttempt.state,
                   PaymentAttempt.order_id.is_not(None))
            .where(PaymentAttempt.idempotency_key.like("renewal:%"))
        )).all())
        wallets = {r[0]: r[1] for r in (await s.execute(
            select(Bucket.account_id, Bucket.remaining).where(Bucket.kind == BucketKind.money)
        )).all()}
        debits = Counter(tuple(r) for r in (await s.execute(
            select(BalanceEntry.account_id, BalanceEntry.delta)
            .where(BalanceEntry.reason == EntryReason.payment)
        )).all())
        notices = Counter(tuple(r) for r in (await s.execute(
            select(Notice.line_id, Notice.event)
            .where(Notice.event.in_(["renewal_succeeded", "renewal_failed"]))
        )).all())
        receipts = list(await s.scalars(select(Receipt.number)))
        settings = (await s.execute(
            select(AutoRenewSetting.period_key, AutoRenewSetting.claimed_until,
                   AutoRenewSetting.attempts, AutoRenewSetting.last_failure)
        )).all()
    renewed = seeded.expiry + timedelta(days=30)

    assert runs == Counter({(line, seeded.period, "wallet"): 1 for line in wallet_lines}
                           | {(line, seeded.period, "card"): 1 for line in card_lines})
    assert orders == Counter({(line, OrderState.fulfilled): 1 for line in ids})
    allowances = ((BucketKind.data, 5 * 1024**3), (BucketKind.voice, 3000),
                  (BucketKind.sms, 50))
    assert grants == Counter({(line, kind, amount, amount, renewed): 1
                              for line in ids for kind, amount in allowances})
    assert {e.astimezone(renewed.tzinfo) if e else None for e in expiries} == {renewed}
    assert sum(expiries.values()) == N
    # Each saved card charged exactly once at the sandbox, for the price.
    assert captures == Counter({(token, "succeeded", PRICE): 1
                                for token in seeded.cards.values()})
    assert attempts == Counter({(f"renewal:{line}:{seeded.period}:0",
                                 AttemptState.succeeded, True): 1 for line in card_lines})
    # Each wallet-funded account debited once; the card-funded wallets untouched.
    wallet_accounts = {seeded.accounts[i] for i in range(0, N, 2)}
    assert debits == Counter({(a, -PRICE): 1 for a in wallet_accounts})
    assert wallets == {a: WALLET - PRICE if a in wallet_accounts else WALLET
                       for a in seeded.accounts}
    assert notices == Counter({(line, "renewal_succeeded"): 1 for line in ids})
    assert len(receipts) == N and len(set(receipts)) == N
    next_period = schedule.period_key(renewed)
    assert set(settings) == {(next_period, None, 0, "")}
    checked = await _ledger_check(env)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
async def seeded(client: httpx.AsyncClient, rt: Runtime) -> Seeded:
    return await _seed(rt, client)


@pytest.mark.skipif(not PG_URL, reason="a lock held inside the batch needs PostgreSQL")
async def test_kill_9_inside_a_renewal_batch_after_the_card_captures(
    rt: Runtime, seeded: Seeded, tmp_path: Path
) -> None:
    """Batches of 50: the test holds (uncommitted) the ``renewal_succeeded`` notice of the
    first batch's first line, so the worker's batch waits on it at its last step — its
    cards already captured at the sandbox, its orders, debits, runs, buckets and expiries
    written but not committed. Killed there, it leaves captured cards with no renewal;
    the restart renews every line once and charges no card twice."""
    first = seeded.lines[0]
    env = _env(rt, 50)
    log = tmp_path / "worker.log"
    blocker = await rt.engine.connect()
    tx = await blocker.begin()
    await blocker.execute(insert(Notice).values(
        id=uuid.uuid4(), key=f"renewal_succeeded:{first}:{seeded.period}",
        event="renewal_succeeded", account_id=seeded.accounts[0], line_id=None,
        urgent=False, channels="", created_at=clock.now(),
    ))  # (no line_id: its foreign key would lock the line the batch takes FOR UPDATE)
    proc = start_worker(env, log)
    try:
        async def waiting() -> bool:
            async with rt.engine.connect() as c:
                n = await c.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE 'INSERT INTO notices%' AND datname = current_database()"
                ))
                return bool(n)

        await until(waiting, "the worker waited inside its renewal batch", proc, log)
        assert await _counts(rt) == (0, 25)  # the first batch's 25 cards, captured
        await _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        await tx.rollback()
        await blocker.close()
    async with rt.sessions() as s:  # the killed batch left nothing but the captures
        orders = await s.scalar(select(func.count()).select_from(Order))
        unlinked = await s.scalar(select(func.count()).select_from(PaymentAttempt).where(
            PaymentAttempt.state == AttemptState.succeeded, PaymentAttempt.order_id.is_(None)))
    assert await _counts(rt) == (0, 25)
    assert orders == 0 and unlinked == 25
    await _restart(rt, env, log)
    await _assert_each_renewed_once(rt, seeded, env)


async def test_kill_9_while_the_worker_renews_then_a_restart_renews_each_line_once(
    rt: Runtime, seeded: Seeded, tmp_path: Path
) -> None:
    """Batches of 10 (wallet and card lines mixed): killed as soon as the first batch's
    renewals are committed — inside the next batch (claimed, cards being captured,
    renewing) or between two — with some but not all lines renewed."""
    env = _env(rt, 10)
    log = tmp_path / "worker.log"
    proc = start_worker(env, log)
    try:
        async def some_renewed() -> bool:
            return (await _counts(rt))[0] > 0

        await until(some_renewed, "renewals started", proc, log)
        await _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    runs, captured = await _counts(rt)
    assert 0 < runs < N, (runs, captured)
    await _restart(rt, env, log)
    await _assert_each_renewed_once(rt, seeded, env)
