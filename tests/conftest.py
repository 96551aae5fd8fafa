"""Test harness: a real database (SQLite file, or PostgreSQL when
``OPENMVNO_TEST_DATABASE_URL`` is set), schema built by Alembic once per
worker, rows wiped after each test; cheap argon2; a fresh runtime per test."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from openmvno import clock
from openmvno.app import create_app
from openmvno.config import Settings
from openmvno.migrate import upgrade
from openmvno.models import Base
from openmvno.runtime import Runtime, build_runtime
from openmvno.worker.runner import drain
from tests.pg import PG_URL, fresh_pg_database
from tests.shared_cache import shared_cache_dir

WORKER = os.environ.get("OPENMVNO_TEST_DB_TAG", "") + os.environ.get("PYTEST_XDIST_WORKER", "gw0")
"""Names this run's databases; OPENMVNO_TEST_DB_TAG keeps parallel runs on one server apart."""


def pytest_report_header() -> str:
    return f"openmvno database: {'postgresql' if PG_URL else 'sqlite'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated database per xdist worker."""
    if PG_URL:
        url = asyncio.run(fresh_pg_database(f"openmvno_test_{WORKER}"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    asyncio.run(upgrade(url))
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        cache_dir=shared_cache_dir(tmp_path_factory),
        environment="development",  # the dev outbox page (last_code) exists only in development
        database_url=database_url,
        data_dir=tmp_path,
        secret_key="test-secret-key-0123456789",  # type: ignore[arg-type]
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        default_language="en",
        public_url="http://testserver",
        db_pool_size=5,
    )


TABLES = [t.name for t in reversed(Base.metadata.sorted_tables)]


async def _tables_with_rows(conn: Any) -> dict[str, int]:
    """The tables (but Alembic's) that hold a row, with how many (counted up to
    :data:`MANY_ROWS` + 1), in one statement: most tests touch a handful of the schema's
    tables, and emptying only those is what makes the wipe cheap."""
    listed = (
        "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        if conn.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type='table'"
    )
    tables = [
        r[0] for r in (await conn.execute(text(listed))).all()
        if r[0] != "alembic_version" and not r[0].startswith("sqlite_")
    ]
    if not tables:
        return {}
    probe = " UNION ALL ".join(
        f"SELECT '{t}', (SELECT count(*) FROM (SELECT 1 FROM \"{t}\" LIMIT {MANY_ROWS + 1}) AS r)"
        f" WHERE EXISTS (SELECT 1 FROM \"{t}\")" for t in tables
    )
    return {r[0]: int(r[1]) for r in (await conn.execute(text(probe))).all()}


MANY_ROWS = 1000
"""PostgreSQL: a table with more rows than this is emptied by TRUNCATE (a new file per
table: tens of milliseconds), the rest by DELETE (a few milliseconds for a test's rows)."""

_OWNED_SEQUENCES = (
    "SELECT setval(s.oid::regclass, 1, false) FROM pg_class s"
    " JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
    " JOIN pg_class t ON t.oid = d.refobjid"
    " WHERE s.relkind = 'S' AND t.relname = ANY(CAST(:tables AS text[]))"
)


async def wipe(rt: Runtime) -> None:
    """Empty every table a test wrote to (and start their id sequences again)."""
    async with rt.engine.begin() as conn:
        tables = await _tables_with_rows(conn)
        if not tables:
            return
        if conn.dialect.name == "postgresql":
            big = [t for t, n in tables.items() if n > MANY_ROWS]
            if big:
                await conn.execute(text(f"TRUNCATE {', '.join(big)} RESTART IDENTITY CASCADE"))
            # The rest row by row, every trigger off (the ledger's journal refuses DELETE;
            # foreign keys: every table holding a row is emptied here, none is left
            # pointing anywhere). The test database's owner is a superuser.
            await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for t in tables:
                if t not in big:
                    await conn.exec_driver_sql(f'DELETE FROM "{t}"')
            await conn.execute(text(_OWNED_SEQUENCES), {"tables": list(tables)})
            return
        ordered = [t for t in TABLES if t in tables] + [t for t in tables if t not in TABLES]
        # The ledger's journal refuses DELETE (a trigger; PostgreSQL's TRUNCATE does not
        # fire it): lift the triggers of the tables emptied here, then put them back.
        triggers = (await conn.exec_driver_sql(
            "SELECT name, sql, tbl_name FROM sqlite_master WHERE type='trigger'"
        )).all()
        lifted = [(name, sql) for name, sql, table in triggers if table in tables]
        for name, _sql in lifted:
            await conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        for t in ordered:
            await conn.execute(text(f'DELETE FROM "{t}"'))
        for _name, sql in lifted:
            await conn.exec_driver_sql(sql)


@pytest.fixture
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings)
    try:
        yield runtime
    finally:
        clock.set_clock(None)
        await wipe(runtime)
        await runtime.close()


_APPS: dict[str, FastAPI] = {}


def app_for(rt: Runtime) -> FastAPI:
    """The app serving ``rt``: one per worker process for each set of settings (but the
    per-test ``data_dir``), handed each test's runtime. The app keeps nothing of its own
    but ``app.state.runtime`` and what it read from the settings when it was built, and
    FastAPI works out each route's context on its first match in an app (~0.5 s for this
    app), which a new app per test paid again every time."""
    key = repr([(name, getattr(value, "get_secret_value", lambda v=value: v)())
                for name, value in rt.settings if name != "data_dir"])
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(runtime=rt)
        # Its middleware now, from these settings (Starlette builds it on the first
        # request, when a test may have changed its settings in place already).
        app.middleware_stack = app.build_middleware_stack()
    # Sharing is sound only while the app keeps nothing else: a new app.state entry
    # would carry one test's state into the next.
    assert set(app.state._state) == {"runtime"}, app.state._state
    app.state.runtime = rt
    return app


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = app_for(rt)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
        clock.set_clock(lambda: self.now)

    def advance(self, **kwargs: Any) -> None:
        from datetime import timedelta

        self.now += timedelta(**kwargs)


@pytest.fixture
def frozen() -> Iterator[FrozenClock]:
    c = FrozenClock()
    yield c
    clock.set_clock(None)


CODE = re.compile(r"\b(\d{6})\b")


async def last_code(client: httpx.AsyncClient, recipient: str) -> str:
    """Read the newest one-time code sent to ``recipient`` from the dev outbox."""
    r = await client.get("/dev/outbox", headers={"Accept": "application/json"})
    for m in r.json()["messages"]:
        if m["recipient"] == recipient:
            match = CODE.search(m["body"])
            if match:
                return match.group(1)
    raise AssertionError(f"no code sent to {recipient}")


async def register_and_login(
    client: httpx.AsyncClient,
    *,
    phone: str | None = None,
    email: str | None = None,
    password: str = "Harbour-Lights-2026",
    name: str = "Li Lei",
) -> dict[str, str]:
    """A verified subscriber; returns auth headers."""
    phone = phone or f"+86138{uuid.uuid4().int % 10**8:08d}"
    body: dict[str, Any] = {"name": name, "phone": phone, "password": password}
    if email:
        body["email"] = email
    r = await client.post("/api/v1/auth/register", json=body)
    assert r.status_code == 201, r.text
    code = await last_code(client, phone)
    r = await client.post("/api/v1/auth/verify", json={"login": phone, "code": code})
    assert r.status_code == 200, r.text
    r = await client.post("/api/v1/auth/token", json={"login": phone, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}", "X-Phone": phone}


@pytest.fixture
def deliver(rt: Runtime) -> Any:
    async def _deliver() -> int:
        return await drain(rt)

    return _deliver


# The browser harness: one served process and one Chromium per test session (per xdist
# worker), shared by every directory's browser tests. Defined here once: a fixture
# imported into several directories' conftests is a separate session fixture in each
# (one more server and browser per directory, all alive until the session ends).
from tests.browser_fixtures import (  # noqa: E402, F401 - fixtures
    base_url,
    browser,
    browser_context_args,
    browser_type,
    browser_type_launch_args,
    datacard,
    launch_browser,
    new_phone,
    playwright,
    portal_server,
)
