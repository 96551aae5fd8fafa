"""``openmvno ledger check`` against the test database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update
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

    # Someone "fixes" a balance by hand, bypassing the journal.
    async with unit_of_work(rt.sessions) as s:
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
