"""``openmvno ledger check`` against the test database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from openmvno.cli import app
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, EntryReason
from openmvno.runtime import Runtime
from tests.ledger.helpers import make_account


async def _run(*args: str) -> tuple[int, str]:
    # The command runs its own event loop (asyncio.run), so give it a thread.
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


@asynccontextmanager
async def _guard_lifted(rt: Runtime) -> AsyncIterator[None]:
    """The buckets' update guard switched off for a moment (what only an administrator
    with DDL rights can do), and put back."""
    async with rt.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("ALTER TABLE buckets DISABLE TRIGGER buckets_guard_update")
            sql = ""
        else:
            sql = (
                await conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'buckets_guard_update'"
                )
            ).scalar_one()
            await conn.exec_driver_sql("DROP TRIGGER buckets_guard_update")
    try:
        yield
    finally:
        async with rt.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(
                    "ALTER TABLE buckets ENABLE TRIGGER buckets_guard_update"
                )
            else:
                await conn.exec_driver_sql(sql)


async def test_check_passes_on_clean_books_and_names_a_corrupted_bucket(
    rt: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMVNO_DATABASE_URL", database_url)
    async with unit_of_work(rt.sessions) as s:
        li = await make_account(s, "Li Lei")
        han = await make_account(s, "Han Meimei")
        for who in (li, han):
            await ledger.credit_wallet(
                s, account_id=who.id, currency="CNY", amount_minor=1000,
                reason=EntryReason.topup, key=f"t-{who.id}",
            )
        han_wallet = await ledger.wallet(s, account_id=han.id, currency="CNY")

    code, output = await _run("ledger", "check")
    assert code == 0, output
    assert "2 buckets checked, no drift" in output

    # Someone "fixes" a balance by hand, bypassing the journal: the database refuses it.
    with pytest.raises(DBAPIError, match="changes only through balance_entries"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(
                update(Bucket)
                .where(Bucket.id == han_wallet.id)
                .values(remaining=Bucket.remaining + 250)
            )
    code, output = await _run("ledger", "check")
    assert code == 0, output

    # Someone with the rights to lift the guard does it anyway: the auditor finds it.
    async with _guard_lifted(rt), unit_of_work(rt.sessions) as s:
        await s.execute(
            update(Bucket).where(Bucket.id == han_wallet.id).values(remaining=Bucket.remaining + 250)
        )
    code, output = await _run("ledger", "check")
    assert code == 1
    assert "1 of 2 bucket(s) disagree" in output
    assert (
        f"bucket={han_wallet.id} account={han.id} kind=money "
        "remaining=1250 sum_of_entries=1000 reserved=0"
    ) in output
    assert str(li.id) not in output
