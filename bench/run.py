"""Run every benchmark on SQLite and (optionally) PostgreSQL and write the figures,
each beside the raw limit of the same database measured in the same run, to
docs/BENCHMARKS.md.

    python bench/run.py [--postgres URL] [--write docs/BENCHMARKS.md] [--quick]
                        [--only orders|cards|reads|notices|outbox|saved_cards|sms_bal|
                                lifecycle|ledger|renewals|charging ...]
                        [--db-prefix openmvno_bench_] [size flags, see --help]

Every benchmark runs on a throw-away SQLite file and, with ``--postgres``, in a fresh
database of its own on that server (``<db-prefix><name>``, dropped and created again).
``--only`` runs some of them; ``--write`` keeps the other sections of the file byte for
byte. ``--quick`` shrinks every benchmark to a smoke size: it checks the harness, its
figures are not a measurement (the file says so). ``scripts/bench`` starts a throwaway
PostgreSQL and calls this.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from openmvno.config import Settings

# Each benchmark's module is imported when its section runs (``--only`` imports less).

SCENARIOS = (
    ("8 subscribers, 8 at a time", 8, 8),
    ("1 subscriber (one wallet row), 8 at a time", 8, 1),
    ("sequential", 1, 1),
)

SECTIONS = {
    "orders": "## Orders end to end",
    "cards": "## Card orders through HTTP",
    "reads": "## Reads through a served process",
    "notices": "## Notices in batches (notify_many)",
    "outbox": "## Outbox delivery (one worker)",
    "saved_cards": "## Saved-card charges (charge_cards on the sandbox)",
    "sms_bal": "## SMS `BAL` round trip over SMPP",
    "lifecycle": "## Line lifecycle moves in batches (lines.lifecycle)",
    "ledger": "## Ledger batches (post_batch)",
    "renewals": "## Renewal storm",
    "charging": "## Usage charging through a served process",
}
"""Each section's title (its start, for the ones whose title goes on), in file order."""

DATABASES = {
    "orders": "orders", "cards": "card_orders", "reads": "reads", "notices": "notices",
    "outbox": "outbox", "saved_cards": "cards", "sms_bal": "sms", "lifecycle": "lifecycle",
    "ledger": "ledger", "renewals": "renewals", "charging": "usage",
}
"""Each benchmark's PostgreSQL database: ``--db-prefix`` + this."""

SIZES: dict[str, tuple[int, int]] = {
    # flag: (full size, --quick size)
    "orders": (300, 6),
    "reads_seconds": (10, 1),
    "reads_rate": (500, 50),
    "notices": (20_000, 60),
    "notices_batch": (1000, 25),
    "outbox": (3000, 30),
    "saved_cards": (50_000, 60),
    "saved_cards_batch": (250, 25),
    "sms_rate": (100, 20),
    "sms_seconds": (10, 1),
    "sms_subscribers": (300, 20),
    "lifecycle": (20_000, 60),
    "lifecycle_batch": (500, 25),
    "ledger_buckets": (100_000, 200),
    "ledger_batches": (10, 2),
    "ledger_batch": (10_000, 100),
    "renewals_lines": (100_000, 40),
    "renewals_sqlite_lines": (10_000, 40),
    "charging_lines": (100_000, 200),
    "charging_batches": (20, 2),
    "charging_batch": (10_000, 100),
}
QUICK_WORKERS = "1"

NOTES = {
    "outbox": """\
Found 2026-12-04 (PostgreSQL with fsync on; a delivered message costs three statements
for a provisioning job — its order read, its outcome, marked sent — and one for an email):
the worker built each of those statements anew for every message, and building an ORM
`UPDATE … VALUES` cost about as much CPU as running it. They are built once now
(`worker.runner._SENT`, `orders.provisioning._WHAT_TO_PROVISION` / `_RECORD_OUTCOME`,
ids bound per execution). Three runs each, alternating, the code before (ebdb2d2) and
after on one fsync-on cluster:

| code | PostgreSQL messages/s | CPU ms / message | SQLite messages/s | CPU ms / message |
|---|---:|---:|---:|---:|
| before | 273–310 | 2.30–2.58 | 160–177 | 5.24–5.68 |
| after | 354–392 | 1.64–1.76 | 186–261 | 3.46–4.48 |

What is left is the driver stack's cost per statement (a raw one-row UPDATE in its own
transaction is 0.6 ms of CPU here) and, on PostgreSQL, one commit per message: each is
marked sent as soon as it is delivered, so a worker killed mid-batch sends again at most
the message in hand. The four-worker renewal test (10,000 renewals, ~30,000 outbox rows)
went from 78 s to 59 s alone on this machine.
""",
    # Hand-written findings, kept after the generated part of a section when it is
    # rewritten (each says when it was found; update or drop it after a re-measurement).
    "sms_bal": """\
How the sender does it since 2026-12-01 22:30 (set-based; before, each round trip was ~6
commits one message at a time):

- MO that arrive while a batch is in its transaction wait and go together in the next
  (`smpp_outbox.Coalescer`): one transaction per batch (`commands.handle_many`), the
  subscribers looked up in two SELECTs and the replay guard taken in one
  `INSERT … ON CONFLICT DO NOTHING RETURNING` for the whole batch; each `deliver_sm_resp`
  still goes only after that commit (a failed batch is run again one message at a time).
  The sender is woken by the commit (no poll wait), and again when a batch of submits is
  done (room in the window).
- The claim and the parts (`sending`, one multi-row INSERT) are one commit before any
  submit; the answers and the outbox rows of the whole claimed batch one commit after.
- Receipts are coalesced the same way (parts, then their outbox rows, in a fixed number
  of statements; an unknown message id is still matched one by one to the in-doubt part).
- On SQLite the process's write transactions take turns on an asyncio lock instead of
  polling the database lock in SQLite's busy handler (sleeps up to 100 ms).

Measured 2026-12-01, 100 MO/s offered for 5 s (500 MO), 300 subscribers, one bind,
window 20, the machine shared with six other engineers; "before" is the code of commit
f16e633, run back to back with "after" at the same load:

| code | database | load avg (1 min) | offered MO/s | replies/s | p50 ms | p99 ms |
|---|---|---:|---:|---:|---:|---:|
| before | sqlite | 14-16 | 100 | 14.7 | 22,571 | 29,994 |
| before | postgresql | 14-16 | 100 | 6.8 | 46,951 | 67,121 |
| after | sqlite | 14-15 | 100 | 21.6 | 17,331 | 18,650 |
| after | postgresql | 14-15 | 100 | 20.2 | 16,128 | 20,364 |
| after | sqlite | 4.6 | 100 | 68.2 | 809 | 2,941 |
| after | sqlite | 5.7 | 100 | 82.9 | 1,908 | 3,204 |

Earlier "before" figures: 28 replies/s, p99 5 s at 50 MO/s (the issue); 12.4/s (SQLite)
and 4.3/s (PostgreSQL) at 100 MO/s at load 11-16.

Since 2026-12-02 00:30 the rest of the batch is set-based too: the rate-limit hits of all
senders (`ratelimit.hit_many`: one advisory-lock statement, one SELECT, one DELETE, one
INSERT), the balances of every `BAL` (`ledger.balances_of_lines`: one SELECT per
language) and all replies (`notifications.send_sms_many`: one INSERT) — a batch of 2 MO
and one of 8 run the same statements (tests/sms/test_commands.py). On the quiet machine
(table above) the target is met on both databases: p99 well under 1 s at 100 MO/s.
""",
    "lifecycle": """\
Most of a move's time is the notices' rendering and their three rows per line (found
2026-12-01 on a small run).
""",
    "ledger": """\
Where the time goes (profiled 2026-12-01 on a small run, PostgreSQL, 10,000 postings over
10,000 buckets): the one INSERT of the entries is ~80 % (five indexes on
`balance_entries` — the unique key, bucket, account, order — and the trigger's grouped
UPDATE), the two SELECTs ~8 %, Python's fold ~10 %. On SQLite the row trigger updates one
bucket row per entry: random buckets cost ~4× the hot ones (page cache misses).
""",
    "renewals": """\
**The target (100,000 in under 60 s) is met**: on the quiet machine (2026-12-02 15:38,
the server sized as docs/OPERATIONS.md says, fsync on) two workers renewed all 100,000
in 51.2 s (1,951/s), four in 55.5 s, one in 104.4 s; each line exactly once, the books
clean. The run before it (15:27): 54.4 s, 55.3 s, 109.5 s. The stop before (12:50, same
machine and settings): 70.7 s, 74.9 s, 138.2 s.

What changed, step by step (100,000 lines, two workers, CPU per renewal counted as the
table above counts it; all but the first row were trial runs on a cluster set up like
`scripts/bench`'s, the middle ones with the schema changed by hand before the seed):

| step | seconds | CPU ms per renewal, workers + PostgreSQL |
|---|---:|---:|
| the stop before (`scripts/bench`) | 70.7 | — |
| claim index + buckets' fillfactor (with `pg_stat_statements` on) | 71.1 | 0.47 + 0.92 |
| the same + no foreign keys on copies (`pg_stat_statements` off) | 67.3 | 0.47 + 0.85 |
| the same + time-ordered ids (a trial: ids patched in) | 63.5 | 0.45 + 0.76 |
| all of it (the committed code) | 54.0 | 0.41 + 0.64 |

- **The claim sorted every due setting, every time.** The claim asks for `ORDER BY
  next_attempt_at, id LIMIT 500`, and the index was `(enabled, next_attempt_at)`: a
  storm's lines all expire at the same moment, so each claim read all the due settings
  and sorted them (an Incremental Sort over one group), 100,000²/500 rows over the storm
  — 11.6 s of statement time at 100,000, most of why a line cost more at 100,000 than
  at 20,000. The index now ends in `id` (the line lifecycle's two claims had the same
  shape and got the same fix).
- **Foreign-key checks were ~45 % of PostgreSQL's time** (dropping every foreign key in a
  trial database took PostgreSQL from 0.74 to 0.48 ms per renewal on 20,000 lines). Each
  check locks the parent row, and the plan all renewals were sold under is locked by
  every transaction of every worker (a multixact). The columns that only copy a
  reference already checked elsewhere lost theirs on PostgreSQL (migration
  `2026_12_02_storm`, docs/ARCHITECTURE.md): −7 % on 20,000 lines (12.4 → 11.5 s).
- **Time-ordered ids** (UUID v7, `openmvno.ids`) for every new row: a batch's rows land
  on the same right-hand index pages instead of random ones (−6 % on 100,000 lines).
- `buckets` with `fillfactor = 50`: the grant's update of a bucket inserted in the same
  transaction is a HOT update (no new index entries); the orders are no longer written
  twice (the receipt number is read from the receipt); the settings are written back
  with one `UPDATE … FROM unnest` per group (was one statement per row); the batch's
  look-ups send one array (`= ANY($1)`) instead of 500 parameters.

Both cores stay busy for the whole storm (~1 % I/O wait): it is CPU. A third or fourth
worker adds nothing on two cores. SQLite, one worker, 10,000 lines: 9.5 s.
""",
    "charging": """\
**Records on 100 hot lines meet both targets in this run (38,746/s = 65.7 % of raw);
records spread over 100,000 lines meet neither (14,196/s = 29.1 %).** The ceiling column
says how far off spread is: with its served processes doing nothing but validation, the
API could charge at most 27,518 spread records/s in this run — PostgreSQL's own CPU for
the API's statements (0.68 s per 10,000 records) and validation (4.7 µs per record) would
by then keep both cores busy. Runs differ a lot on this machine; the CPU columns move
less, and they are the figures to read. In four runs of spread on 2026-12-04 (this one
and three on a default fsync-on cluster): the API 14,178–18,851/s, raw 44,449–58,744/s,
29–35 % of raw; the database's CPU 0.55–0.70 s per 10,000 records, validation 3.0–5.3
µs per record, the ceiling 26,479–34,204/s.

**What limits spread is CPU.** Per 10,000 spread records the API path costs 0.94–1.21
CPU seconds (0.39–0.51 in the served processes, 0.55–0.70 in PostgreSQL's backends);
raw costs 0.18–0.22, on one connection. 30,000/s on two cores leaves 67 µs of CPU per
record for everything, and the database's share alone is 55–70 µs of it: between
nothing and ~8 µs per record would be left for HTTP, rating, building the statements,
reading their rows back and answering, which cost ~40–50 µs now (py-spy: flat).
Without the explicit bucket lock (about 12 % of the database's time below) ~7 µs more;
with the usage row as the journal entry of its charge (no second insert, instead of the
issue's entry per bucket per batch) perhaps ~15 µs more. Half of raw needs about the
same: at 22,000–29,000/s (half of these runs' raw) the served processes would get
10–30 µs per record.

Where a spread batch's PostgreSQL time goes (`pg_stat_statements`, 20 batches,
2026-12-04 14:55 UTC, execution time per batch of 10,000): the ledger's ~9,500 entries
with the trigger's grouped bucket update 291 ms, the usage rows 190 ms, the buckets'
unlocked read 110 ms, their lock 88 ms, the lines 61 ms; raw's insert 103 ms and update
58 ms. Alone on the same data (2026-12-04, earlier): the entries' insert without its
trigger 110–200 ms (its indexes — id, key, bucket — about 50 ms of it), the trigger's
grouped update 100–145 ms. A trial that moved the balances by one grouped UPDATE instead
of the entries (not kept: no journal) reached 39–42 % of raw against 33–40 % for the
product in alternating runs, and dropping the lock as well gained nothing more.

What moved it on 2026-12-03 (spread 26–30 % → 38–39 % of raw that evening, hot ~54 %
→ 62–68 %): two `serve` processes with each request in flight on its own connection
to its own process, as a load balancer dealing connections to the process with the
fewest would (`serve --workers 2` shares one listening socket, and both of the bench's
keep-alive connections often landed in one process while the other idled;
docs/OPERATIONS.md tells operators to spread a peer's connections so); `usage_records`
keyed by `(peer_id, record_id)` (no sequence value, no second index per record) and no
look-up of the records sent before on the optimistic run; `balance_entries` without
the unused `account_id` index and with `order_id` indexed only where set; one generic
plan for every statement of a batch, each look-up joining its keys' array to an index.
""",
}

QUICK_NOTE = (
    "**Quick run, not a measurement** (`bench/run.py --quick`: smoke sizes that check the "
    "harness; run `scripts/bench` for figures)."
)


def postgres_settings(postgres: str | None, name: str) -> Settings | None:
    if not postgres:
        return None
    return common.bench_settings(common.fresh_postgres_url(postgres, name), common.temp_dir())


def with_sqlite(pg: Settings | None) -> list[Settings]:
    """A new SQLite file, and the PostgreSQL database (the same one every time)."""
    return [common.sqlite_settings()] + ([pg] if pg else [])


async def run_cards(found: list[Settings], n: int) -> list[dict[str, Any]]:
    import card_orders

    results = []
    for settings in found:
        r = await card_orders.measure(settings, n, 8)
        results.append(r)
        print(f"{r['database']:<10} card orders (HTTP + sandbox + webhook) {r['orders_per_s']:>8}")
    return results


def run_orders(postgres: str | None, n: int, db_name: str) -> list[dict[str, Any]]:
    from orders import measure

    pg = postgres_settings(postgres, db_name)
    results = []
    for label, concurrency, accounts in SCENARIOS:
        for settings in with_sqlite(pg):
            r = asyncio.run(measure(settings, n, concurrency, accounts))
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
        version = out.stdout.strip() or "PostgreSQL"
    except OSError:
        version = "PostgreSQL"
    return f"{version}, server settings {server_settings(url)}"


SHOWN_SETTINGS = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "fsync",
                  "synchronous_commit")


def server_settings(url: str) -> str:
    """The server settings that move the figures, as ``name=value`` (docs/OPERATIONS.md)."""
    dsn = common.libpq_dsn(url)
    query = ("SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) "
             "FROM pg_settings WHERE name = ANY(ARRAY['" + "','".join(SHOWN_SETTINGS) + "'])")
    try:
        out = subprocess.run(["psql", dsn, "-Atc", query], capture_output=True, text=True,
                             check=False, timeout=10)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def header(postgres: str | None, ran: list[str] | None = None, *, quick: bool = False) -> str:
    partial = ""
    if ran is not None and set(ran) != set(SECTIONS):
        partial = f" ({', '.join(sorted(ran))} only; the other sections are from an earlier run)"
    kind = " — quick run, not a measurement (smoke sizes)" if quick else ""
    return f"""# Benchmarks

Latest run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{partial}{kind} on {machine()}; \
{postgres_version(postgres)}.
One command runs all of them — on SQLite and on a throwaway PostgreSQL, each beside the
raw limit of the same database measured in the same run — and rewrites this file
(`--only NAME` reruns some sections and keeps the others; `--quick` checks the harness
at smoke sizes; `python bench/run.py --help` lists the sizes):

```sh
./scripts/bench
```
"""


def span_line(at: str, before: str, after: str) -> str:
    return f"Measured {at}; load average (1, 5, 15 min) before → after: {before} → {after}."


def orders_section(results: list[dict[str, Any]], n: int, measured: str) -> str:
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

{measured}
"""


def cards_section(cards: list[dict[str, Any]], n: int, measured: str) -> str:
    card_rows = "\n".join(f"| {r['database']} | {r['orders_per_s']} |" for r in cards)
    return f"""## Card orders through HTTP with the sandbox provider

The whole path a subscriber's card payment takes, in-process over ASGI (so no
network time is counted): `POST /api/v1/orders`, `POST /api/v1/orders/{{id}}/payments`
(card), the sandbox's hosted page takes test card 4242 4242 4242 4242, its signed
webhook is delivered to `/webhooks/sandbox`, verified, stored once and applied —
fulfilment included. 8 subscribers at a time, {n} orders.

| database | card orders/s |
|---|---:|
{card_rows}

{measured}
"""


def kept_sections(path: Path) -> dict[str, str]:
    """The sections of an existing BENCHMARKS.md by name (to keep those not rerun)."""
    if not path.exists():
        return {}
    found = {}
    for chunk in path.read_text().split("\n## ")[1:]:
        text = "## " + chunk.rstrip() + "\n"
        name = next((n for n, title in SECTIONS.items() if text.startswith(title)), None)
        if name is None:
            title = text.splitlines()[0]
            print(f"warning: {path} has a section no benchmark writes, dropped: {title}",
                  file=sys.stderr)
        else:
            found[name] = text
    return found


def markdown(
    sections: dict[str, str], postgres: str | None, ran: list[str] | None = None,
    *, quick: bool = False,
) -> str:
    body = "\n".join(sections[name] for name in SECTIONS if name in sections)
    return header(postgres, ran, quick=quick) + "\n" + body


def finish(name: str, generated: str, *, quick: bool) -> str:
    """A rewritten section: the generated part (marked when quick), then its NOTES."""
    text = generated.rstrip() + "\n"
    if quick:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{QUICK_NOTE}\n{rest}"
    if name in NOTES:
        text += "\n" + NOTES[name]
    return text


def size(args: argparse.Namespace, key: str) -> int:
    given = getattr(args, key)
    if given is not None:
        return int(given)
    full, quick = SIZES[key]
    return quick if args.quick else full


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"),
                   help="a PostgreSQL server's URL (each bench makes its own database there)")
    p.add_argument("--write", type=Path, help="the BENCHMARKS.md to rewrite")
    p.add_argument("--only", action="append", choices=list(SECTIONS),
                   help="run this benchmark only (may be repeated)")
    p.add_argument("--quick", action="store_true",
                   help="smoke sizes: checks the harness, not a measurement")
    p.add_argument("--db-prefix", default=common.PREFIX,
                   help="start of the PostgreSQL databases' names (default %(default)s)")
    for key, (full, quick) in SIZES.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"default {full:,} ({quick:,} with --quick)")
    p.add_argument("--renewals-workers", default=None,
                   help=f"worker counts on PostgreSQL (default 1,2,4; {QUICK_WORKERS} with "
                        "--quick)")
    return p


MODULE_RUNS: dict[str, tuple[str, dict[str, str]]] = {
    "notices": ("notices", {"n": "notices", "batch": "notices_batch"}),
    "outbox": ("outbox", {"n": "outbox"}),
    "saved_cards": ("saved_cards", {"cards": "saved_cards", "batch": "saved_cards_batch"}),
    "sms_bal": ("sms_bal", {"rate": "sms_rate", "seconds": "sms_seconds",
                            "subscribers": "sms_subscribers"}),
    "lifecycle": ("lifecycle", {"n": "lifecycle", "batch": "lifecycle_batch"}),
    "ledger": ("ledger", {"buckets": "ledger_buckets", "batches": "ledger_batches",
                          "batch": "ledger_batch"}),
}
"""The benchmarks whose module's ``run(pg, db_name=…, **sizes)`` and ``markdown(found)``
are all it takes: module, and each ``run`` argument's size name in :data:`SIZES`."""


def main() -> None:
    args = parser().parse_args()
    wanted = [name for name in SECTIONS if name in set(args.only or SECTIONS)]
    sections = kept_sections(args.write) if args.write else {}
    pg, quick = args.postgres, args.quick

    def db(name: str) -> str:
        return args.db_prefix + DATABASES[name]

    for name in wanted:
        before, at = common.load_average(), common.now_utc()
        generated: str
        if name == "orders":
            n = size(args, "orders")
            found = run_orders(pg, n, db(name))
            generated = orders_section(found, n, span_line(at, before, common.load_average()))
        elif name == "cards":
            n = size(args, "orders") // 2
            targets = with_sqlite(postgres_settings(pg, db(name)))
            found = asyncio.run(run_cards(targets, n))
            generated = cards_section(found, n, span_line(at, before, common.load_average()))
        elif name == "reads":
            import reads

            seconds, rate = size(args, "reads_seconds"), size(args, "reads_rate")
            found = reads.run(pg, seconds=seconds, rate=rate, db_name=db(name))
            generated = reads.markdown(found, seconds=seconds, rate=rate)
        elif name in MODULE_RUNS:
            module_name, sized = MODULE_RUNS[name]
            module = importlib.import_module(module_name)
            kwargs = {arg: size(args, key) for arg, key in sized.items()}
            generated = module.markdown(module.run(pg, db_name=db(name), **kwargs))
        elif name == "renewals":
            import renewals as renewals_bench

            workers = args.renewals_workers or (QUICK_WORKERS if quick else "1,2,4")
            generated = renewals_bench.markdown(renewals_bench.run(
                pg, lines=size(args, "renewals_lines"),
                workers=tuple(int(w) for w in workers.split(",")),
                sqlite_lines=size(args, "renewals_sqlite_lines"), db_name=db(name)))
        else:
            import charging as charging_bench

            # bench/charging.py names its database itself (``openmvno_bench_usage``) unless
            # its run() takes a db_name.
            named = "db_name" in inspect.signature(charging_bench.run).parameters
            found = charging_bench.run(
                pg, lines=size(args, "charging_lines"), batches=size(args, "charging_batches"),
                batch=size(args, "charging_batch"), **({"db_name": db(name)} if named else {}))
            generated = charging_bench.markdown(found)
        sections[name] = finish(name, generated, quick=quick)
        print(f"-- {name} done", flush=True)
    if args.write:
        args.write.write_text(markdown(sections, pg, wanted, quick=quick))
        print(f"wrote {args.write}")
    else:
        print("\n".join(sections[name] for name in wanted))


if __name__ == "__main__":
    main()
