"""The ``openmvno`` command: serve, worker, db, demo, import, staff."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from openmvno.commandline import settings_for
from openmvno.ledger.cli import app as ledger_app
from openmvno.notifications.cli import app as outbox_app
from openmvno.worker.cli import app as jobs_app

app = typer.Typer(help="OpenMVNO back office.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(outbox_app, name="outbox")
app.add_typer(jobs_app, name="jobs")
console = Console()
from openmvno.catalog import cli as setup_cli  # noqa: E402 - operator set-up commands

app.add_typer(setup_cli.import_app, name="import")
app.add_typer(setup_cli.staff_app, name="staff")
from openmvno.usage import cli as usage_cli  # noqa: E402 - network peers, traffic simulator

app.add_typer(usage_cli.peers_app, name="peers")
app.add_typer(usage_cli.simulate_app, name="simulate")
app.command("demo")(setup_cli.demo)
from openmvno.channels.sms import cli as smpp_cli  # noqa: E402 - the SMPP bind process

app.command("smpp")(smpp_cli.smpp)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Where the SQLite file lives")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo operator first")] = False,
    workers: Annotated[int, typer.Option(help="HTTP worker processes", min=1)] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the outbox worker in-process")
    ] = False,
) -> None:
    """Apply migrations and serve the API, portal and consoles."""
    settings = settings_for(data_dir, serving=True, demo=demo)  # refused before any import
    import uvicorn

    from openmvno.app import create_app
    from openmvno.logs import setup_logging
    from openmvno.migrate import upgrade

    if "public_url" not in settings.model_fields_set:
        # Links, payment return pages and sandbox webhooks must reach this very server.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        settings.public_url = f"http://{shown}:{port}"
    setup_logging(json_lines=settings.log_json)
    asyncio.run(upgrade(settings.database_url))
    if demo:
        from openmvno.demo import load_demo, print_demo

        result = asyncio.run(load_demo(settings))
        print_demo(console, settings, result, host=host, port=port)
    embedded = settings.embedded_worker and not no_worker
    options = {
        "host": host, "port": port, "log_config": None, "access_log": False,
        # Forwarded headers are honoured by the app itself, from OPENMVNO_TRUSTED_PROXIES
        # only (see app.create_app); uvicorn's own handling, which trusts 127.0.0.1 or
        # FORWARDED_ALLOW_IPS by default, stays off so nothing else widens that trust.
        "proxy_headers": False,
        "forwarded_allow_ips": ",".join(settings.trusted_proxies),
    }
    if workers == 1:
        uvicorn.run(create_app(settings, embedded_worker=embedded), **options)  # type: ignore[arg-type]
        return
    # Several processes: each builds its app from the environment (see app.app_from_env).
    os.environ["OPENMVNO_ENVIRONMENT"] = settings.environment
    os.environ["OPENMVNO_DATA_DIR"] = str(settings.data_dir)
    os.environ["OPENMVNO_DATABASE_URL"] = settings.database_url
    os.environ["OPENMVNO_PUBLIC_URL"] = settings.public_url
    os.environ["OPENMVNO_EMBEDDED_WORKER"] = "true" if embedded else "false"
    uvicorn.run("openmvno.app:app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option()] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run everything due until nothing is left, then exit")
    ] = False,
) -> None:
    """Run the outbox (SMS, email, provisioning) and every scheduled job (line expiry,
    grace, suspension, renewals, reminders). Run as many processes as you like; SIGTERM or
    Ctrl-C finishes the batch in hand, then stops."""
    settings = settings_for(data_dir, serving=True, migrated=True)  # refused before any import
    from openmvno.logs import setup_logging
    from openmvno.worker.cli import run_worker

    setup_logging(json_lines=settings.log_json)
    n = run_worker(settings, once=once)
    if once:
        console.print(f"delivered {n} message(s) and job item(s)")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument()] = "head",
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    from openmvno.migrate import upgrade

    settings = settings_for(data_dir)
    applied = asyncio.run(upgrade(settings.database_url, revision))
    if applied:
        console.print(f"[green]applied {len(applied)} migration(s):[/green] {', '.join(applied)}")
    else:
        console.print("[green]database is up to date[/green]; nothing to apply")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="e.g. -1")],
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Step the schema back (development only)."""
    from openmvno.migrate import downgrade

    asyncio.run(downgrade(settings_for(data_dir).database_url, revision))
    console.print(f"[yellow]downgraded to {revision}[/yellow]")
