"""``openmvno ledger ...``: look after the books from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from openmvno.commandline import plural, settings_for
from openmvno.config import Settings
from openmvno.db import make_engine, make_sessionmaker
from openmvno.ledger import service
from openmvno.ledger.service import Drift

app = typer.Typer(help="Balances: buckets and their entries.", no_args_is_help=True)
console = Console()


async def _check(settings: Settings) -> tuple[int, list[Drift]]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            count = await service.bucket_count(session)
            drifts = await service.check(session)
            await session.rollback()
        return count, drifts
    finally:
        await engine.dispose()


@app.command("check")
def check(
    data_dir: Annotated[Path | None, typer.Option(help="Where the SQLite file lives")] = None,
) -> None:
    """Verify every bucket: remaining == sum of its entries, and never below zero.

    Exits 1 and lists the offenders when any bucket drifted.
    """
    count, drifts = asyncio.run(_check(settings_for(data_dir, migrated=True)))
    if not drifts:
        console.print(f"[green]ledger ok: {plural(count, 'bucket')} checked, no drift[/green]")
        return
    typer.echo(f"ledger DRIFT: {len(drifts)} of {count} bucket(s) disagree with their entries")
    for d in drifts:
        typer.echo(
            f"bucket={d.bucket_id} account={d.account_id} kind={d.kind.value} "
            f"remaining={d.remaining} sum_of_entries={d.entries_sum} reserved={d.reserved}"
        )
    raise typer.Exit(code=1)
