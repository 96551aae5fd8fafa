"""``openmvno peers ...`` (network peers' API keys) and ``openmvno simulate usage``."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from openmvno import clock
from openmvno.commandline import settings_for
from openmvno.config import Settings
from openmvno.db import make_engine, make_sessionmaker, unit_of_work
from openmvno.errors import DomainError
from openmvno.formatting import operator_datetime
from openmvno.usage import peers

peers_app = typer.Typer(help="Network peers that send usage records (API keys).",
                        no_args_is_help=True)
simulate_app = typer.Typer(help="Drive a running server with simulated traffic.",
                           no_args_is_help=True)
console = Console()
DataDir = Annotated[Path | None, typer.Option(help="Where the SQLite file lives")]


async def _run(settings: Settings, action: Any) -> Any:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            return await action(session)
    finally:
        await engine.dispose()


def _fail(exc: DomainError) -> None:
    from openmvno.i18n import translate

    typer.echo(f"error: {exc.code}: {translate('en', exc.message, **exc.params)}", err=True)
    raise typer.Exit(code=1)


@peers_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for the peer, e.g. pgw-beijing-1")],
    scope: Annotated[list[str] | None, typer.Option(help="Scopes (default usage:write)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a peer and print its API key (shown this once; only its hash is kept)."""
    settings = settings_for(data_dir, migrated=True)
    try:
        peer, key = asyncio.run(_run(
            settings, lambda s: peers.create(s, name=name, scopes=scope or ["usage:write"])
        ))
    except DomainError as exc:
        _fail(exc)
        return
    console.print(f"peer [bold]{peer.name}[/bold] created, scopes: {', '.join(peer.scopes)}")
    console.print("API key (shown once; send it as the X-API-Key header):")
    typer.echo(key)


@peers_app.command("list")
def list_peers(data_dir: DataDir = None) -> None:
    """Every peer: name, key prefix, scopes, created, revoked."""
    settings = settings_for(data_dir, migrated=True)
    found = asyncio.run(_run(settings, peers.list_peers))
    if not found:
        console.print("no peers yet: openmvno peers create NAME")
        return
    table = Table("name", "key", "scopes", "created", "revoked")
    for p in found:
        table.add_row(
            p.name, p.key_prefix + "…", ", ".join(p.scopes),
            operator_datetime(p.created_at, settings),
            operator_datetime(p.revoked_at, settings) if p.revoked_at else "-",
        )
    console.print(table)


@peers_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The peer's name")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a peer's API key at once (it cannot be undone; create a new peer instead)."""
    settings = settings_for(data_dir, migrated=True)
    try:
        peer = asyncio.run(_run(settings, lambda s: peers.revoke(s, name=name)))
    except DomainError as exc:
        _fail(exc)
        return
    console.print(f"peer {peer.name} revoked; its key no longer works")


# --- simulate ----------------------------------------------------------------------------


def make_records(
    rng: random.Random, msisdns: list[str], n: int, prefix: str, seq: int
) -> list[dict[str, Any]]:
    """``n`` plausible records over ``msisdns``: mostly data, some voice and SMS."""
    now = clock.now()
    out = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.8:
            kind, units = "data", rng.randint(20_000, 5_000_000)
        elif roll < 0.95:
            kind, units = "voice", rng.randint(5, 600)
        else:
            kind, units = "sms", 1
        out.append({
            "record_id": f"{prefix}-{seq + i}", "msisdn": rng.choice(msisdns), "type": kind,
            "units": units,
            "started_at": (now - timedelta(seconds=rng.randint(0, 60))).isoformat(),
        })
    return out


async def simulate(
    url: str, key: str, msisdns: list[str], rate: float, duration: float, batch: int,
    seed: int, *, transport: Any = None,
) -> dict[str, int]:
    """Send ``rate`` records a second for ``duration`` seconds to ``url``'s usage API, in
    requests of at most ``batch`` records, with a progress bar; the counts per status.
    (``transport``: an httpx transport, e.g. to an app in the same process.)"""
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rng = random.Random(seed)
    prefix = f"sim-{uuid.uuid4().hex[:8]}"
    totals: dict[str, int] = {}
    sent = 0
    started = time.monotonic()
    planned = int(rate * duration)
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as client:
        with Progress(
            TextColumn("[bold]usage[/bold]"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
        ) as progress:
            task = progress.add_task("usage", total=planned, status="")
            while sent < planned:
                due = int((time.monotonic() - started) * rate) - sent
                if due <= 0:
                    await asyncio.sleep(min(0.05, 1 / max(rate, 1)))
                    continue
                n = min(due, batch, planned - sent)
                records = make_records(rng, msisdns, n, prefix, sent)
                response = await client.post(
                    "/api/v1/usage", json={"records": records}, headers={"X-API-Key": key}
                )
                if response.status_code != 200:
                    console.print(f"[red]{response.status_code}[/red] {response.text[:300]}")
                    raise typer.Exit(code=1)
                for status, count in response.json()["counts"].items():
                    totals[status] = totals.get(status, 0) + count
                sent += n
                progress.update(task, completed=sent, status=" ".join(
                    f"{k}={v}" for k, v in sorted(totals.items())
                ))
    return totals


async def _msisdns(settings: Settings, limit: int) -> list[str]:
    from sqlalchemy import select

    from openmvno.lines.models import Line, LineState

    async def pick(session: Any) -> list[str]:
        rows = await session.scalars(
            select(Line.msisdn).where(Line.state == LineState.active, Line.account_id.is_not(None))
            .order_by(Line.msisdn).limit(limit)
        )
        return list(rows.all())

    found: list[str] = await _run(settings, pick)
    return found


@simulate_app.command("usage")
def simulate_usage(
    lines: Annotated[int, typer.Option(help="How many active lines to spread usage over")] = 10,
    rate: Annotated[float, typer.Option(help="Records per second")] = 50.0,
    duration: Annotated[float, typer.Option(help="Seconds to run")] = 30.0,
    url: Annotated[str, typer.Option(help="The server")] = "http://127.0.0.1:8000",
    key: Annotated[str | None, typer.Option(help="A peer's API key (default: a new peer)")] = None,
    msisdn: Annotated[list[str] | None, typer.Option(help="Numbers to use (default: the "
                                                      "database's active lines)")] = None,
    batch: Annotated[int, typer.Option(help="Records per request at most")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (same traffic every run)")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Send usage records to a running server's usage API, so balances move live."""
    numbers = list(msisdn or [])
    settings: Settings | None = None
    if not numbers or key is None:
        settings = settings_for(data_dir, migrated=True)
    if not numbers:
        assert settings is not None
        numbers = asyncio.run(_msisdns(settings, lines))
        if not numbers:
            typer.echo("no active lines to use (run `openmvno demo`, or pass --msisdn)", err=True)
            raise typer.Exit(code=1)
    if key is None:
        assert settings is not None
        name = f"simulator-{uuid.uuid4().hex[:6]}"
        _peer, key = asyncio.run(_run(settings, lambda s: peers.create(s, name=name)))
        console.print(f"using a new peer {name}")
    numbers = numbers[:lines]
    console.print(f"{len(numbers)} line(s), {rate:g} records/s for {duration:g} s → {url}")
    totals = asyncio.run(simulate(url, key, numbers, rate, duration, max(1, batch), seed))
    console.print("done: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))


__all__ = ["make_records", "peers_app", "simulate", "simulate_app"]
