"""Off-session charges of saved cards: ``payments.cards.charge_cards`` on the sandbox.

    python bench/saved_cards.py [--postgres URL] [--cards 50000] [--batch 250]
                                [--db-name NAME]

A fresh database (PostgreSQL: ``openmvno_bench_cards`` on the given server, or
``--db-name``; SQLite: a throw-away file) gets ``--cards`` accounts, each with one saved
sandbox card (always charges). Then every card is charged once through ``charge_cards``
in batches of ``--batch`` (what a renewal batch of twice that many lines asks for):
attempts recorded in one unit of work, the sandbox's set-based ``charge_saved`` (one
statement), the answers in one unit of work. Then the same keys again (a retry after a
crash: nothing is charged a second time). Printed: the docs/BENCHMARKS.md section
(charges/s, the statements per batch, the replay's rate); every card charged exactly
once is checked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import each_target, measured_line

from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.migrate import upgrade
from openmvno.runtime import build_runtime

BENCH_DB = "openmvno_bench_cards"
SECRET = "bench-only-secret-key-0123456789abcdef"  # noqa: S105


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


async def measure(url: str, data_dir: Path, n: int, batch: int) -> dict[str, Any]:
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


def run(postgres: str | None, *, cards: int = 50_000, batch: int = 250,
        db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    return each_target(
        postgres, db_name, "openmvno-bench-cards-",
        lambda s: measure(s.database_url, s.data_dir, cards, batch),
        lambda r: f"{r['database']:<10} {r['per_s']:>8.0f} charges/s   "
                  f"{r['statements_per_batch']:.0f} statements per batch   "
                  f"replay {r['replay_per_s']:>8.0f}/s")


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/BENCHMARKS.md section."""
    first = results[0]
    rows = "\n".join(
        f"| {r['database']} | {r['cards']} | {r['batch']} | {r['per_s']:.0f} | "
        f"{r['statements_per_batch']:.0f} | {r['replay_per_s']:.0f} |" for r in results)
    return f"""## Saved-card charges (charge_cards on the sandbox)

`bench/saved_cards.py`: N accounts with one saved sandbox card each, every card charged
once through `payments.cards.charge_cards` in batches of {first['batch']:,} (what a renewal batch of
{2 * first['batch']:,} lines, half card-funded, asks for), then the same keys again (a retry after a
crash: nothing is charged twice, the recorded answers come back). Per batch: the cards
read, the attempts' `INSERT … SELECT` over one JSON parameter returning every key's
attempt, the sandbox's one-statement `charge_saved` (in its own transaction, as an outside
company), one `UPDATE … FROM` the answers `RETURNING` what changed — three short units of
work, none open while the provider is asked. The bench checks every card was charged
exactly once.

```sh
python bench/saved_cards.py --cards {first['cards']} --batch {first['batch']} [--postgres URL]
```

| database | cards | batch | charges/s | statements per batch | replay (same keys) /s |
|---|---:|---:|---:|---:|---:|
{rows}

(SQLite counts the `BEGIN IMMEDIATE` of each unit of work as a statement.)

{measured_line(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, cards=args.cards, batch=args.batch,
                       db_name=args.db_name)))


if __name__ == "__main__":
    main()
