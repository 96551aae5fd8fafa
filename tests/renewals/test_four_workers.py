"""Four real ``openmvno worker --once`` processes at once on PostgreSQL over 10,000 due
wallet-funded renewals: exactly 10,000 renewals (one per line and period), 10,000
``renewal_succeeded`` notices, every wallet charged once, the books clean."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.notifications.models import Notice
from openmvno.renewals import schedule
from openmvno.renewals.models import AutoRenewSetting, Funding
from openmvno.renewals.runs import RenewalRun
from openmvno.runtime import Runtime
from tests.conftest import PG_URL

N = 10_000
WORKERS = 4
PRICE = 3000
pytestmark = pytest.mark.skipif(not PG_URL, reason="four workers at once need PostgreSQL")


async def _seed(rt: Runtime) -> None:
    """N subscribers, each with a wallet of 5,000 and an active line on the plan, due now
    (expiry in 12 hours), auto-renew on with the wallet. Set-based (executemany)."""
    now = clock.now()
    expires = (now + timedelta(hours=12)).replace(microsecond=0)
    plan_id = uuid.uuid4()
    accounts, lines, buckets, entries, settings = [], [], [], [], []
    for i in range(N):
        account_id, line_id, bucket_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        accounts.append({"id": account_id, "role": "subscriber", "name": f"Storm {i}",
                         "phone": f"+86137{i:08d}", "email": None, "password_hash": "x",
                         "language": "zh-CN" if i % 2 else "en", "verified_at": now,
                         "failed_logins": 0, "active": True, "created_at": now,
                         "updated_at": now})
        lines.append({"id": line_id, "kind": LineKind.esim, "iccid": f"8986099{i:012d}",
                      "msisdn": f"+86170{i:08d}", "account_id": account_id,
                      "state": LineState.active, "plan_id": plan_id, "expires_at": expires,
                      "auto_renew": True, "activated_at": now, "state_changed_at": now,
                      "created_at": now, "updated_at": now})
        buckets.append({"id": bucket_id, "account_id": account_id, "line_id": None,
                        "kind": BucketKind.money, "currency": "CNY", "valid_from": now,
                        "priority": 100, "initial": 0, "remaining": 0, "reserved": 0,
                        "created_at": now, "updated_at": now})
        entries.append({"bucket_id": bucket_id, "account_id": account_id, "delta": 5000,
                        "reason": EntryReason.topup, "idempotency_key": f"storm-fund:{i}",
                        "memo": "", "created_at": now})
        settings.append({"id": uuid.uuid4(), "line_id": line_id, "account_id": account_id,
                         "enabled": True, "funding": Funding.wallet, "wallet_fallback": True,
                         "period_key": schedule.period_key(expires), "attempts": 0,
                         "next_attempt_at": now - timedelta(minutes=1), "last_failure": "",
                         "waiting_for_wallet": False, "created_at": now, "updated_at": now})
    async with unit_of_work(rt.sessions) as s:
        s.add(Plan(id=plan_id, code="STORM30", kind=PlanKind.data, name_zh="风暴月包",
                   name_en="Storm monthly", price_minor=PRICE, currency="CNY",
                   validity_days=30, data_bytes=10 * 1024**3))
        await s.flush()
        for model, rows in ((Account, accounts), (Line, lines), (Bucket, buckets),
                            (BalanceEntry, entries), (AutoRenewSetting, settings)):
            for start in range(0, N, 2000):
                await s.execute(insert(model), rows[start:start + 2000])


def _worker_env(rt: Runtime, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMVNO_")}
    env.update({
        "OPENMVNO_ENVIRONMENT": "development",
        "OPENMVNO_DATABASE_URL": rt.settings.database_url,
        "OPENMVNO_DATA_DIR": str(data_dir),
        "OPENMVNO_SECRET_KEY": "four-workers-secret-key-0123456789",
        "OPENMVNO_DB_POOL_SIZE": "3",
        "OPENMVNO_LOG_JSON": "true",
    })
    return env


async def test_four_workers_renew_10000_lines_exactly_once(rt: Runtime, tmp_path: Path) -> None:
    await _seed(rt)
    env = _worker_env(rt, tmp_path)
    command = [sys.executable, "-c", "from openmvno.cli import app; app()", "worker", "--once"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
    processes = []
    for log in logs:
        with log.open("wb") as out:
            processes.append(await asyncio.create_subprocess_exec(
                *command, env=env, stdout=out, stderr=subprocess.STDOUT))
    for p, log in zip(processes, logs, strict=True):
        assert await asyncio.wait_for(p.wait(), timeout=1800) == 0, log.read_text()[-3000:]

    async with unit_of_work(rt.sessions) as s:
        runs = await s.scalar(select(func.count()).select_from(RenewalRun))
        lines_renewed = await s.scalar(select(func.count(func.distinct(RenewalRun.line_id))))
        notices = await s.scalar(select(func.count()).select_from(Notice).where(
            Notice.event == "renewal_succeeded"))
        wallets = list(await s.scalars(select(Bucket.remaining).where(
            Bucket.kind == BucketKind.money)))
        left = await s.scalar(select(func.count()).select_from(AutoRenewSetting).where(
            (AutoRenewSetting.claimed_until.is_not(None))
            | (AutoRenewSetting.next_attempt_at <= clock.now())))
        extended = await s.scalar(select(func.count()).select_from(Line).where(
            Line.expires_at > clock.now() + timedelta(days=30)))
        drift = await ledger.check(s)
    # A worker's errors, if any, say why a line was left (the logs are JSON lines).
    errors = [line[:4000] for log in logs for line in log.read_text().splitlines()
              if '"level": "error"' in line or '"level": "warning"' in line]
    assert (runs, lines_renewed, errors) == (N, N, [])
    assert notices == N
    assert len(wallets) == N and set(wallets) == {5000 - PRICE}
    assert left == 0
    assert extended == N
    assert drift == []
    # Every worker took part (the claims shared the work out).
    took_part = sum(1 for log in logs if "renewals round" in log.read_text())
    assert took_part >= 2, [log.read_text()[-500:] for log in logs]
