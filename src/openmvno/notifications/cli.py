"""``openmvno outbox``: see what is waiting or dead, and send dead messages again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openmvno.commandline import settings_for
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.notifications import service
from openmvno.runtime import build_runtime

app = typer.Typer(help="The outbox of SMS, email and provisioning jobs.", no_args_is_help=True)
console = Console()


def _settings(data_dir: Path | None) -> Settings:
    return settings_for(data_dir, migrated=True)


@app.command("status")
def status(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Messages per kind and state, and the last error of each dead one."""
    rt = build_runtime(_settings(data_dir))

    async def main() -> None:
        try:
            async with unit_of_work(rt.sessions) as session:
                counts = await service.counts(session)
                dead = await service.dead(session, limit=20)
                from openmvno.adapters.sms import smpp_outbox  # SMS delivery receipts

                parts = await smpp_outbox.delivery_counts(session)
                failed = await smpp_outbox.recent_failures(session, limit=10)
        finally:
            await rt.close()
        table = Table("kind", "state", "messages")
        for (kind, state), n in sorted(counts.items()):
            table.add_row(kind, state, str(n))
        console.print(table)
        for m in dead:
            console.print(f"[red]dead[/red] {m.kind} to {m.recipient}: {m.last_error}")
        if parts:
            console.print("SMS parts by delivery: " + ", ".join(
                f"{state} {n}" for state, n in sorted(parts.items())))
        for f in failed:
            console.print(f"[red]not delivered[/red] SMS to {f.recipient}: {f.error}")

    asyncio.run(main())


@app.command("retry")
def retry(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Put dead messages back in the queue (after fixing what made them fail)."""
    rt = build_runtime(_settings(data_dir))

    async def main() -> int:
        try:
            async with unit_of_work(rt.sessions) as session:
                return await service.requeue_dead(session)
        finally:
            await rt.close()

    console.print(f"requeued {asyncio.run(main())} message(s)")
