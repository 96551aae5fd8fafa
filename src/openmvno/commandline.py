"""What every ``openmvno`` command does before its work: read the settings (one clear
line per problem, exit 2, never a traceback), refuse what production must not run, and
check that the database is migrated. Domain ``cli.py`` modules and ``app_from_env`` use
these; ``openmvno.cli`` only assembles the commands (so nothing imports it back)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from openmvno.config import Settings


def refusals(settings: Settings, *, serving: bool) -> list[str]:
    """Why this process must not start (``serving``: ``serve``/``worker``, which also refuse
    what production cannot run with); warnings go to stderr at once."""
    found = settings.problems()
    if serving:
        found += settings.deploy_problems()
        if not found:
            for warning in settings.deploy_warnings():
                print(f"warning: {warning}", file=sys.stderr)
    return found


def refuse(problems: list[str]) -> None:
    """One line per problem on stderr (never wrapped), for the operator's terminal and logs."""
    for problem in problems:
        print(f"configuration: {problem}", file=sys.stderr)


def read_settings(data_dir: Path | None = None, **values: Any) -> Settings | list[str]:
    """Settings from the environment (and ``values``), or what is wrong with them, one
    line per variable (a value of the wrong kind, e.g. ``OPENMVNO_ENVIRONMENT=prod``)."""
    if data_dir:
        values["data_dir"] = data_dir
    try:
        return Settings(**values)
    except ValidationError as exc:
        return [
            f"OPENMVNO_{str(error['loc'][0]).upper()}: {error['msg']}" if error["loc"]
            else str(error["msg"])
            for error in exc.errors()
        ]


def settings_for(
    data_dir: Path | None = None,
    *,
    serving: bool = False,
    demo: bool = False,
    migrated: bool = False,
) -> Settings:
    """Settings from the environment, with the data directory created (SQLite lives there);
    settings this release cannot run with stop the command with a clear message and exit
    code 2. ``serving``: also what production refuses; ``demo`` (``serve --demo``) means
    development unless ``OPENMVNO_ENVIRONMENT`` is set; ``migrated``: the database must
    be at the newest schema (else one line saying to run ``openmvno db upgrade``)."""
    settings = read_settings(data_dir)
    if demo and isinstance(settings, Settings) and "environment" not in settings.model_fields_set:
        settings = read_settings(data_dir, environment="development")
    problems = settings if isinstance(settings, list) else refusals(settings, serving=serving)
    if problems:
        refuse(problems)
        raise typer.Exit(2)
    assert isinstance(settings, Settings)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrated:
        require_migrated(settings)
    return settings


def require_migrated(settings: Settings) -> None:
    """Stop with one line (exit 2) when the database lacks migrations or cannot be reached."""
    from openmvno.migrate import pending

    try:
        todo = asyncio.run(pending(settings.database_url))
    except (OSError, SQLAlchemyError) as exc:  # unreachable server, bad URL, no permission
        print(f"database: cannot open {_shown(settings)}: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc
    if todo:
        print(
            f"database: {_shown(settings)} lacks {len(todo)} migration(s); "
            "run `openmvno db upgrade` first",
            file=sys.stderr,
        )
        raise typer.Exit(2)


def _shown(settings: Settings) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 subscriber``, ``2 subscribers``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
