"""Migrations: from empty to head, and one step down and up again, on the test backend."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from openmvno.migrate import MIGRATIONS, alembic_config, downgrade, upgrade
from openmvno.models import Base
from tests.pg import PG_URL, fresh_pg_database


async def _fresh_url(tmp_path: Path) -> str:
    if not PG_URL:
        return f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
    name = f"openmvno_mig_{os.environ.get('OPENMVNO_TEST_DB_TAG', '')}{os.environ.get('PYTEST_XDIST_WORKER', 'gw0')}"
    return await fresh_pg_database(name)


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


def test_upgrade_from_empty_then_down_past_refunds_and_up(tmp_path: Path) -> None:
    """Every later migration's downgrade runs, down to before the refunds tables."""
    url = asyncio.run(_fresh_url(tmp_path))
    asyncio.run(upgrade(url))
    model_tables = {t.name for t in Base.metadata.sorted_tables}
    assert asyncio.run(_tables(url)) == model_tables
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    asyncio.run(downgrade(url, "20261201_guest_links"))
    after_down = asyncio.run(_tables(url))
    assert after_down < model_tables
    assert "payment_refunds" not in after_down and "orders" in after_down
    asyncio.run(upgrade(url))
    assert asyncio.run(_tables(url)) == model_tables


def test_single_head() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    assert len(script.get_heads()) == 1
