"""Operator set-up commands: ``openmvno import plans|lines``, ``openmvno staff create``,
``openmvno demo``. Each command is one unit of work: all of it, or none of it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.catalog.imports import ImportRejected, ImportSummary
from openmvno.commandline import settings_for
from openmvno.config import Settings
from openmvno.db import unit_of_work
from openmvno.errors import DomainError
from openmvno.i18n import translate
from openmvno.runtime import Runtime, build_runtime

import_app = typer.Typer(help="Load plans (YAML) or SIM/eSIM/data-card stock (CSV).",
                         no_args_is_help=True)
staff_app = typer.Typer(help="Agents and admins.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")
DataDir = Annotated[Path | None, typer.Option(help="Where the SQLite file lives")]


def _settings(data_dir: Path | None) -> Settings:
    return settings_for(data_dir, migrated=True)


def _run(data_dir: Path | None, work: Callable[[AsyncSession, Runtime], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction; a domain error prints its reason(s) and exits 1."""

    settings = _settings(data_dir)

    async def main() -> T:
        rt = build_runtime(settings)
        try:
            async with unit_of_work(rt.sessions) as session:
                return await work(session, rt)
        finally:
            await rt.close()

    try:
        return asyncio.run(main())
    except ImportRejected as exc:
        err.print(f"[red]{translate('en', exc.message, **exc.params)}[/red]")
        for e in exc.errors:
            err.print(f"  {e}", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    except DomainError as exc:
        err.print(f"[red]{translate('en', exc.message, **exc.params)}[/red]")
        raise typer.Exit(1) from exc


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read {path}: {exc}[/red]")
        raise typer.Exit(2) from exc


def _summary(what: str, s: ImportSummary) -> None:
    out.print(
        f"[green]{what}: {s.created} created, {s.updated} updated, {s.unchanged} unchanged[/green]"
    )


@import_app.command("plans")
def import_plans(
    file: Annotated[Path, typer.Argument(help="YAML: a list of plans, or 'plans:' with one")],
    data_dir: DataDir = None,
) -> None:
    """Create or update plans by code; if any row is bad, nothing changes."""
    from openmvno.catalog import service as catalog

    try:
        document: Any = yaml.safe_load(_read(file))
    except yaml.YAMLError as exc:
        err.print(f"[red]{file} is not valid YAML: {exc}[/red]")
        raise typer.Exit(1) from exc

    async def work(session: AsyncSession, rt: Runtime) -> ImportSummary:
        return await catalog.import_plans(
            session, document, default_currency=rt.settings.default_currency
        )

    _summary("plans", _run(data_dir, work))


@import_app.command("lines")
def import_lines(
    file: Annotated[
        Path,
        typer.Argument(help="CSV: kind,iccid,msisdn,device_serial,esim_matching_id[,pin]"),
    ],
    data_dir: DataDir = None,
) -> None:
    """Add SIM / eSIM / data-card stock; if any row is bad, nothing is added."""
    from openmvno.lines import importer

    text = _read(file)

    async def work(session: AsyncSession, rt: Runtime) -> ImportSummary:
        return await importer.import_lines(session, rt, text)

    _summary("lines", _run(data_dir, work))


@staff_app.command("create")
def staff_create(
    role: Annotated[str, typer.Option(help="agent or admin")],
    name: Annotated[str, typer.Option(help="Full name")],
    email: Annotated[str, typer.Option(help="Login email")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)
    ],
    data_dir: DataDir = None,
) -> None:
    """Create an agent or admin account (verified at once)."""
    from openmvno.accounts import service as accounts
    from openmvno.accounts.models import Role

    if role not in (Role.agent.value, Role.admin.value):
        err.print("[red]--role must be agent or admin[/red]")
        raise typer.Exit(2)

    async def work(session: AsyncSession, rt: Runtime) -> str:
        account = await accounts.create_staff(
            session, rt, name=name, email=email, password=password, role=Role(role)
        )
        return f"{account.role.value} {account.email} ({account.id})"

    out.print(f"[green]created {_run(data_dir, work)}[/green]")


def demo(
    data_dir: DataDir = None,
    host: Annotated[str, typer.Option(help="Host shown in the printed URLs")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port shown in the printed URLs")] = 8000,
) -> None:
    """Apply migrations and load the demo operator (safe to run again)."""
    from openmvno.demo import load_demo, print_demo
    from openmvno.migrate import upgrade

    settings = settings_for(data_dir)
    if settings.environment != "development":
        print("configuration: openmvno demo loads logins with known passwords and is refused "
              "in production; set OPENMVNO_ENVIRONMENT=development on a test machine",
              file=sys.stderr)
        raise typer.Exit(2)
    asyncio.run(upgrade(settings.database_url))
    result = asyncio.run(load_demo(settings))
    print_demo(out, settings, result, host=host, port=port)
