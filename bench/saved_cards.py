"""Off-session charges of saved cards: ``payments.cards.charge_cards`` on the sandbox.

    python bench/saved_cards.py [--postgres URL] [--cards 50000] [--batch 250]

A fresh database (PostgreSQL: ``openmvno_bench_cards`` on the given server; SQLite: a
throw-away file) gets ``--cards`` accounts, each with one saved sandbox card (always
charges). Then every card is charged once through ``charge_cards`` in batches of
``--batch`` (what a renewal batch of twice that many lines asks for): attempts recorded in
one unit of work, the sandbox's set-based ``charge_saved`` (one statement), the answers in
one unit of work. Then the same keys again (a retry after a crash: nothing is charged a
second time). Printed: charges/s and the statements per batch; every card charged exactly
once is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import upgrade
from openmvno.runtime import build_runtime

BENCH_DB = "openmvno_bench_cards"
SECRET = "bench-only-secret-key-0123456789abcdef"  # noqa: S105


async def _fresh_postgres(url: str) -> str:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
    await admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + BENCH_DB


async def _seed(rt: Any, n: int) -> list[uuid.UUID]:
    from openmvno.accounts.models import Account
    from openmvno.adapters.payments.sandbox_cards import customer_ref
    from openmvno.adapters.payments.sandbox_models import SandboxCard
    from openmvno.payments.cards import CardState, SavedCard

    ids = [uuid.uuid4() for _ in range(n)]
    for start in range(0, n, 5000):
        chunk = ids[start : start + 5000]
        async with unit_of_work(rt.sessions) as s:
            await s.execute(insert(Account), [
                {"id": i, "name": "Bench", "password_hash": "!", "language": "zh-CN"}
                for i in chunk])
            await s.execute(insert(SandboxCard), [
                {"id": uuid.uuid4(), "token": f"sbcard_b{i.hex[:24]}",
                 "customer_ref": customer_ref(rt, str(i)), "brand": "visa", "last4": "4242",
                 "exp_month": 12, "exp_year": 2039, "charges": "succeed"} for i in chunk])
            await s.execute(insert(SavedCard), [
                {"id": uuid.uuid4(), "account_id": i, "provider": "sandbox",
                 "customer_ref": customer_ref(rt, str(i)), "card_ref": f"sbcard_b{i.hex[:24]}",
                 "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2039,
                 "state": CardState.active, "is_default": True} for i in chunk])
    return ids


async def run(url: str, data_dir: Path, n: int, batch: int) -> dict[str, Any]:
    from openmvno.adapters.payments.sandbox_models import SandboxCharge
    from openmvno.payments.cards import CardCharge, charge_cards

    await upgrade(url)
    rt = build_runtime(Settings(database_url=url, data_dir=data_dir, secret_key=SECRET,
                                environment="development", public_url="http://bench"))
    try:
        ids = await _seed(rt, n)
        charges = [CardCharge(i, 3000, "CNY", f"bench:{i}", "bench") for i in ids]
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(rt.engine.sync_engine, "before_cursor_execute", count)
        started = time.perf_counter()
        ok = 0
        for start in range(0, n, batch):
            results = await charge_cards(rt, charges[start : start + batch])
            ok += sum(r.status == "succeeded" for r in results)
        first = time.perf_counter() - started
        first_statements = statements
        started = time.perf_counter()
        for start in range(0, n, batch):
            await charge_cards(rt, charges[start : start + batch])
        replay = time.perf_counter() - started
        event.remove(rt.engine.sync_engine, "before_cursor_execute", count)
        async with rt.sessions() as s:
            charged = await s.scalar(select(func.count()).select_from(SandboxCharge))
        if ok != n or charged != n:
            raise SystemExit(f"expected {n} charges exactly once: {ok} answered, {charged} made")
        batches = -(-n // batch)
        return {"cards": n, "batch": batch, "seconds": first, "per_s": n / first,
                "statements_per_batch": first_statements / batches,
                "replay_per_s": n / replay}
    finally:
        await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="")
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmvno-bench-cards-"))
    sqlite = asyncio.run(run(f"sqlite+aiosqlite:///{tmp / 'bench.db'}", tmp, args.cards,
                             args.batch))
    print("sqlite", sqlite)
    if args.postgres:
        url = asyncio.run(_fresh_postgres(args.postgres))
        print("postgresql", asyncio.run(run(url, tmp, args.cards, args.batch)))


if __name__ == "__main__":
    main()
