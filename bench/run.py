"""Run every benchmark on SQLite and (optionally) PostgreSQL and write the figures,
each beside the raw database rate (orders) or ``/healthz`` (reads) measured in the same
run, to docs/BENCHMARKS.md.

    python bench/run.py [--postgres URL] [--write docs/BENCHMARKS.md] [--orders 300]
                        [--only orders|cards|reads|ledger|renewals ...] [--reads-seconds 10]

``--only`` runs some of them; the file keeps the other sections as they were.
``scripts/bench`` starts a throwaway PostgreSQL and calls this.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import card_orders
import charging as charging_bench
import reads

import ledger as ledger_bench
import renewals as renewals_bench
from openmvno.config import Settings
from orders import measure

SCENARIOS = (
    ("8 subscribers, 8 at a time", 8, 8),
    ("1 subscriber (one wallet row), 8 at a time", 8, 1),
    ("sequential", 1, 1),
)


def sqlite_settings() -> Settings:
    tmp = Path(tempfile.mkdtemp(prefix="openmvno-bench-"))
    return Settings(data_dir=tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'b.db'}")


def targets(postgres: str | None) -> list[Settings]:
    found = [sqlite_settings()]
    if postgres:
        found.append(Settings(database_url=postgres))
    return found


async def run_cards(postgres: str | None, n: int) -> list[dict[str, Any]]:
    results = []
    for settings in targets(postgres):
        r = await card_orders.measure(settings, n, 8)
        results.append(r)
        print(f"{r['database']:<10} card orders (HTTP + sandbox + webhook) {r['orders_per_s']:>8}")
    return results


async def run_all(postgres: str | None, n: int) -> list[dict[str, Any]]:
    results = []
    for label, concurrency, accounts in SCENARIOS:
        for settings in targets(postgres):
            r = await measure(settings, n, concurrency, accounts)
            r["scenario"] = label
            results.append(r)
            print(
                f"{r['database']:<10} {label:<45} {r['orders_per_s']:>8} orders/s   "
                f"raw {r['raw_commits_per_s']:>8} commits/s"
            )
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def postgres_version(url: str | None) -> str:
    if not url:
        return "not run"
    try:
        out = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, check=False, timeout=5
        )
        return out.stdout.strip() or "PostgreSQL"
    except OSError:
        return "PostgreSQL"


def header(postgres: str | None, ran: list[str] | None = None) -> str:
    partial = ""
    if ran is not None and set(ran) != set(SECTIONS):
        partial = f" ({', '.join(sorted(ran))} only; the other sections are from an earlier run)"
    return f"""# Benchmarks

Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{partial} on {machine()}; \
{postgres_version(postgres)}.
Command (installs what it needs, starts a throwaway PostgreSQL, rewrites this file):

```sh
./scripts/bench
```
"""


def orders_section(results: list[dict[str, Any]], n: int) -> str:
    rows = "\n".join(
        f"| {r['database']} | {r['scenario']} | {r['orders_per_s']} | "
        f"{r['raw_commits_per_s']} | {r['orders_per_s'] / r['raw_commits_per_s']:.1%} |"
        for r in results
    )
    return f"""## Orders end to end

Each order is created with an idempotency key, paid from the wallet and fulfilled —
plan buckets granted, line expiry extended, receipt numbered, provisioning job and
success notice queued — in one transaction, through the same service functions the
API calls ({n} orders per scenario). **Raw** is the same database's rate of a
single-row `UPDATE … ; COMMIT` at the same concurrency in the same run (one row per
client), through the same driver stack the service uses (SQLAlchemy async over
asyncpg / aiosqlite): the ceiling for anything that commits once per unit of work.

| database | scenario | orders/s | raw commits/s | orders / raw |
|---|---|---:|---:|---:|
{rows}

Reading the numbers: an order is about 36 SQL statements and one commit, so it costs
roughly what 30–40 raw commits cost; the ORM's Python work, not the database, is most
of it. On SQLite every transaction takes the single write lock up front (`BEGIN
IMMEDIATE`), so orders are serialised whatever the concurrency. One wallet row shared
by every order (the "1 subscriber" row) is the worst case: its row lock is held until
commit. Card payments add the provider's round trips but no database work beyond a
second short transaction.
"""


def cards_section(cards: list[dict[str, Any]], n: int) -> str:
    card_rows = "\n".join(f"| {r['database']} | {r['orders_per_s']} |" for r in cards)
    return f"""## Card orders through HTTP with the sandbox provider

The whole path a subscriber's card payment takes, in-process over ASGI (so no
network time is counted): `POST /api/v1/orders`, `POST /api/v1/orders/{{id}}/payments`
(card), the sandbox's hosted page takes test card 4242 4242 4242 4242, its signed
webhook is delivered to `/webhooks/sandbox`, verified, stored once and applied —
fulfilment included. 8 subscribers at a time, {n // 2} orders.

| database | card orders/s |
|---|---:|
{card_rows}
"""


SECTIONS = {
    "orders": "## Orders end to end",
    "cards": "## Card orders through HTTP",
    "reads": "## Reads through a served process",
    "ledger": "## Ledger batches (post_batch)",
    "renewals": "## Renewal storm",
    "charging": "## Usage charging through a served process",
    # Run by their own commands (each section names it); kept as they are by --write.
    "notices": "## Notices in batches (notify_many)",
    "saved_cards": "## Saved-card charges (charge_cards on the sandbox)",
    "sms_bal": "## SMS `BAL` round trip over SMPP",
    "lifecycle": "## Line lifecycle moves in batches (lines.lifecycle)",
}
OWN_COMMAND = frozenset({"notices", "saved_cards", "sms_bal", "lifecycle"})
"""Sections whose benchmark has its own command (``python bench/<name>.py --help``)."""


def kept_sections(path: Path) -> dict[str, str]:
    """The sections of an existing BENCHMARKS.md by name (to keep those not rerun)."""
    if not path.exists():
        return {}
    found = {}
    for chunk in path.read_text().split("\n## ")[1:]:
        text = "## " + chunk.rstrip() + "\n"
        for name, title in SECTIONS.items():
            if text.startswith(title):
                found[name] = text
    return found


def markdown(
    sections: dict[str, str], postgres: str | None, ran: list[str] | None = None
) -> str:
    body = "\n".join(sections[name] for name in SECTIONS if name in sections)
    return header(postgres, ran) + "\n" + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--write", type=Path)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--only", action="append", choices=sorted(set(SECTIONS) - OWN_COMMAND))
    parser.add_argument("--reads-seconds", type=int, default=10)
    parser.add_argument("--reads-rate", type=int, default=500)
    args = parser.parse_args()
    wanted = set(args.only or set(SECTIONS) - OWN_COMMAND)
    sections = kept_sections(args.write) if args.write else {}
    if "orders" in wanted:
        sections["orders"] = orders_section(asyncio.run(run_all(args.postgres, args.orders)),
                                            args.orders)
    if "cards" in wanted:
        sections["cards"] = cards_section(asyncio.run(run_cards(args.postgres, args.orders // 2)),
                                          args.orders)
    if "reads" in wanted:
        found = reads.run(args.postgres, seconds=args.reads_seconds, rate=args.reads_rate)
        sections["reads"] = reads.markdown(found, seconds=args.reads_seconds, rate=args.reads_rate)
    if "ledger" in wanted:
        sections["ledger"] = ledger_bench.markdown(ledger_bench.run(args.postgres))
    if "renewals" in wanted:
        sections["renewals"] = renewals_bench.markdown(renewals_bench.run(args.postgres))
    if "charging" in wanted:
        sections["charging"] = charging_bench.markdown(charging_bench.run(args.postgres))
    if args.write:
        args.write.write_text(markdown(sections, args.postgres, sorted(wanted)))
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
