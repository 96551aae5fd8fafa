"""``openmvno worker`` (the loop, with clean stops on SIGTERM/SIGINT) and ``openmvno jobs``
(what every job and the outbox have due, claimed and dead; retry what died)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openmvno.commandline import settings_for
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind
from openmvno.runtime import build_runtime
from openmvno.worker import status as job_status

app = typer.Typer(help="Scheduled jobs and the outbox: what is due, claimed, dead.",
                  no_args_is_help=True)
console = Console()


def install_stop(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the worker finishes the batch in hand, then exits."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def run_worker(settings: Settings, *, once: bool) -> int:
    """Run the worker in this process until stopped (or, ``once``, until nothing is due);
    returns the work done."""
    import openmvno.models  # noqa: F401 - every mapper known before the first flush
    from openmvno.worker.runner import drain, run_forever

    rt = build_runtime(settings)

    async def main() -> int:
        stop = asyncio.Event()
        install_stop(stop)
        try:
            if once:
                return await drain(rt, max_rounds=None, stop=stop)
            await run_forever(rt, stop)
            return 0
        finally:
            await rt.close()

    return asyncio.run(main())


def _when(settings: Settings, value: object) -> str:
    from datetime import datetime

    from openmvno.formatting import operator_datetime

    if not isinstance(value, datetime):
        return "—"
    return operator_datetime(value, settings)


@app.command("status")
def status(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Per job: due now, claimed, failing or dead, last run and error; the outbox per kind
    and its dead messages with their last error."""
    from openmvno.worker.runner import jobs

    settings = settings_for(data_dir, migrated=True)
    rt = build_runtime(settings)

    async def main() -> job_status.Status:
        try:
            async with unit_of_work(rt.sessions) as session:
                return await job_status.status(session, jobs(rt))
        finally:
            await rt.close()

    found = asyncio.run(main())
    table = Table("job", "due now", "claimed", "failing/dead", f"last run ({settings.timezone})",
                  "failures", "last error")
    for j in found.jobs:
        c = j.counts
        table.add_row(
            j.name, str(c.due) if c else "—", str(c.claimed) if c else "—",
            str(c.failing) if c else "—", _when(settings, j.last_run_at), str(j.failures),
            j.last_error[:80],
        )
    console.print(table)
    for j in found.jobs:
        if j.counts is not None and j.counts.detail:
            console.print(f"{j.name}: {j.counts.detail}")
    box = Table("outbox kind", "due now", "waiting", "claimed", "sent", "dead")
    for o in found.outbox:
        box.add_row(o.kind, str(o.due), str(o.waiting), str(o.claimed), str(o.sent), str(o.dead))
    console.print(box)
    for m in found.dead:
        console.print(
            f"[red]dead[/red] {m.kind} to {m.recipient} ({m.attempts} attempts, "
            f"queued {_when(settings, m.created_at)}): {m.last_error}"
        )


@app.command("retry")
def retry(
    kind: Annotated[
        OutboxKind | None, typer.Option("--kind", help="Only dead outbox messages of this kind")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job's failed items")] = None,
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Make dead outbox messages and failed job items due again (after fixing the cause)."""
    from openmvno.worker.runner import jobs

    settings = settings_for(data_dir, migrated=True)
    rt = build_runtime(settings)

    async def main() -> tuple[int, int]:
        try:
            async with unit_of_work(rt.sessions) as session:
                return await job_status.retry(session, jobs(rt), kind=kind, job=job)
        finally:
            await rt.close()

    messages, items = asyncio.run(main())
    console.print(f"requeued {messages} message(s); {items} job item(s) due again")
