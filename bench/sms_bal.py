"""SMS ``BAL`` round trip over a real SMPP link: the npm ``smpp`` SMSC
(tests/sms/smsc_peer.js, installed into the test-tools folder) sends MO ``deliver_sm``
"BAL" from many subscribers at a fixed rate (open loop); one ``openmvno smpp`` sender
(in this process) takes each as a command, queues the balance reply in the outbox and
submits it. Latency is from the MO command handed to the SMSC to the reply's
``submit_sm`` seen by the SMSC (both stamped on the SMSC side of the pipe).

    python bench/sms_bal.py [--postgres URL] [--rate 100] [--seconds 10] [--subscribers 300]
                            [--db-name NAME]

PostgreSQL runs in a fresh database ``openmvno_bench_sms`` (``--db-name``) on the given
server; SQLite in a throw-away file. Prints the docs/BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import database, each_target, measured_line  # noqa: E402

from openmvno.accounts.models import Account  # noqa: E402
from openmvno.catalog.models import Plan, PlanKind  # noqa: E402
from openmvno.channels.sms.cli import sender_for  # noqa: E402
from openmvno.config import Settings  # noqa: E402
from openmvno.db import unit_of_work  # noqa: E402
from openmvno.ledger import service as ledger  # noqa: E402
from openmvno.ledger.models import EntryReason  # noqa: E402
from openmvno.lines.models import Line, LineKind, LineState  # noqa: E402
from openmvno.migrate import upgrade  # noqa: E402
from openmvno.runtime import Runtime, build_runtime  # noqa: E402

SCRIPT = ROOT / "tests" / "sms" / "smsc_peer.js"
BENCH_DB = "openmvno_bench_sms"


async def seed(rt: Runtime, n: int) -> list[str]:
    numbers = []
    run = secrets.randbelow(10)  # a database used before keeps its numbers
    async with unit_of_work(rt.sessions) as s:
        plan = Plan(code=f"B{uuid.uuid4().hex[:6]}", kind=PlanKind.mixed, name_zh="基准套餐",
                    name_en="Bench plan", price_minor=3000, currency="CNY", validity_days=30)
        s.add(plan)
        await s.flush()
        for i in range(n):
            account = Account(name=f"Bench {i}", phone=f"+8615{run}{i:08d}", password_hash="!",  # noqa: S106 - no login
                              language="zh-CN" if i % 2 else "en")
            s.add(account)
            await s.flush()
            line = Line(kind=LineKind.sim, iccid=f"898600{run}{i:012d}",
                        msisdn=f"+8618{run}{i:08d}",
                        account_id=account.id, state=LineState.active, plan_id=plan.id)
            s.add(line)
            await ledger.credit_wallet(s, account_id=account.id, currency="CNY",
                                       amount_minor=10000, reason=EntryReason.topup,
                                       key=f"bench-wallet:{account.id}")
            numbers.append(line.msisdn.lstrip("+"))
    return numbers


async def measure(settings: Settings, *, rate: float, seconds: float, subscribers: int
                  ) -> dict[str, Any]:
    await upgrade(settings.database_url)
    modules = Path(os.environ.get("OPENMVNO_TEST_TOOLS", ROOT / ".test-tools")) / "node_modules"
    node = shutil.which("node")
    assert node, "node is needed"
    assert (modules / "smpp").exists(), "run scripts/test once (it installs npm smpp) first"
    proc = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), env={**os.environ, "SMPP_NODE_MODULES": str(modules)},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
    assert proc.stdout
    assert proc.stdin
    port = json.loads(await proc.stdout.readline())["port"]
    settings = settings.model_copy(update={
        "sms_adapter": "smpp", "smpp_port": port, "smpp_system_id": "openmvno",
        "smpp_password": SecretStr("secret12"), "smpp_window": 20,
        "smpp_max_per_second": 1000.0, "worker_poll_seconds": 0.2,
        "sms_commands_per_hour": 10_000})
    rt = build_runtime(settings)
    numbers = await seed(rt, subscribers)

    sender = sender_for(rt, "bench")  # what `openmvno smpp` runs
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    await asyncio.wait_for(sender.link.bound.wait(), timeout=30)
    sent: dict[str, list[float]] = {}
    latencies: list[float] = []
    total = int(rate * seconds)
    done = asyncio.Event()

    async def read() -> None:
        assert proc.stdout
        while line := await proc.stdout.readline():
            event = json.loads(line)
            if event["event"] == "message" and sent.get(event["to"]):
                latencies.append(time.perf_counter() - sent[event["to"]].pop(0))
                if len(latencies) == total:
                    done.set()

    reader = asyncio.create_task(read())
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        number = numbers[i % len(numbers)]
        sent.setdefault(number, []).append(time.perf_counter())
        proc.stdin.write((json.dumps({"cmd": "mo", "from": number, "to": "10086",
                                      "text": "BAL"}) + "\n").encode())
    await proc.stdin.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    reader.cancel()
    proc.stdin.close()
    proc.terminate()
    await proc.wait()
    await rt.close()
    ordered = sorted(latencies)

    def pct(p: float) -> float | None:
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)

    return {"database": database(settings), "subscribers": subscribers, "seconds": seconds,
            "offered_per_s": rate, "answered": len(ordered), "sent": total,
            "replies_per_s": round(len(ordered) / elapsed, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.mean(ordered) * 1000, 1) if ordered else None}


def run(postgres: str | None, *, rate: float = 100, seconds: float = 10,
        subscribers: int = 300, db_name: str = BENCH_DB) -> list[dict[str, Any]]:
    """SQLite, then PostgreSQL (database ``db_name``, fresh) when a server is given."""
    return each_target(
        postgres, db_name, "openmvno-bench-sms-",
        lambda s: measure(s, rate=rate, seconds=seconds, subscribers=subscribers), json.dumps)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """The docs/BENCHMARKS.md section."""
    first = results[0]
    subs, secs = first["subscribers"], f"{first['seconds']:g}"
    rate = f"{first['offered_per_s']:g}"
    rows = "\n".join(
        f"| {r['database']} | {r['subscribers']} | {r['offered_per_s']:g} | {r['sent']} | "
        f"{r['answered']} | {r['replies_per_s']} | {_num(r['p50_ms'])} | {_num(r['p99_ms'])} |"
        for r in results)
    return f"""## SMS `BAL` round trip over SMPP

`bench/sms_bal.py`: the npm `smpp` SMSC (tests/sms/smsc_peer.js) sends MO `deliver_sm`
"BAL" from {subs} subscribers at a fixed rate (open loop) for {secs} s; one `openmvno
smpp` sender (`channels.sms.cli.sender_for`, what the command runs; one bind, window 20)
takes them as commands, queues the balance replies in the outbox, claims them, records
the parts, submits them and records the answers and receipts. Latency: MO handed to the
SMSC → the reply's `submit_sm` seen by the SMSC. replies/s is answered ÷ time until the
last reply, so it includes the drain after the {secs} s. Target (issue 9): p99 under
1 s at 100 MO/s.

```sh
python bench/sms_bal.py --rate {rate} --seconds {secs} --subscribers {subs} [--postgres URL]
```

| database | subscribers | offered MO/s | MO sent | answered | replies/s | p50 ms | p99 ms |
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}

{measured_line(results)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--postgres", default=os.environ.get("OPENMVNO_BENCH_POSTGRES"))
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--db-name", default=BENCH_DB,
                        help="the PostgreSQL database to (re)create for the run")
    args = parser.parse_args()
    print(markdown(run(args.postgres, rate=args.rate, seconds=args.seconds,
                       subscribers=args.subscribers, db_name=args.db_name)))


if __name__ == "__main__":
    main()
