"""The database keeps the ledger's books: an entry moves its bucket, nothing else can,
and the journal is append-only (PostgreSQL and SQLite triggers)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from openmvno import clock
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.runtime import Runtime
from tests.ledger.helpers import books, make_account

CNY = "CNY"


async def _wallet(rt: Runtime, name: str, amount: int) -> tuple[uuid.UUID, uuid.UUID]:
    async with unit_of_work(rt.sessions) as s:
        account = await make_account(s, name)
        w = await ledger.credit_wallet(
            s, account_id=account.id, currency=CNY, amount_minor=amount,
            reason=EntryReason.topup, key=f"topup-{name}",
        )
        assert w.remaining == amount  # the ORM object follows what the trigger did
        return account.id, w.id


def _entry(bucket_id: uuid.UUID, account_id: uuid.UUID, delta: int, key: str) -> dict[str, object]:
    return {
        "bucket_id": bucket_id, "account_id": account_id, "delta": delta,
        "reason": EntryReason.adjust, "idempotency_key": key, "memo": "", "created_at": clock.now(),
    }


async def test_an_inserted_entry_moves_its_bucket_by_itself(rt: Runtime) -> None:
    li, wallet = await _wallet(rt, "Li Lei", 1000)
    async with unit_of_work(rt.sessions) as s:
        # Three entries in one statement (PostgreSQL: one trigger run sums them).
        await s.execute(
            insert(BalanceEntry),
            [_entry(wallet, li, d, f"raw-{i}") for i, d in enumerate((-300, 50, -100))],
        )
    assert await books(rt) == {"Li Lei wallet CNY": 650}


async def test_a_raw_update_of_a_balance_is_refused(rt: Runtime) -> None:
    _li, wallet = await _wallet(rt, "Li Lei", 1000)
    with pytest.raises(DBAPIError, match="changes only through balance_entries"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(update(Bucket).where(Bucket.id == wallet).values(remaining=5000))
    # Other columns stay editable (reservations, validity).
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Bucket).where(Bucket.id == wallet).values(reserved=200))
    assert await books(rt) == {"Li Lei wallet CNY": 1000}


async def test_a_bucket_cannot_be_born_full(rt: Runtime) -> None:
    li, _wallet_id = await _wallet(rt, "Li Lei", 1000)
    now = clock.now()
    with pytest.raises(DBAPIError, match="starts empty"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(
                insert(Bucket).values(
                    id=uuid.uuid4(), account_id=li, kind=BucketKind.data, valid_from=now,
                    priority=100, initial=10, remaining=10, reserved=0,
                    created_at=now, updated_at=now,
                )
            )


async def test_the_journal_is_append_only(rt: Runtime) -> None:
    _li, wallet = await _wallet(rt, "Li Lei", 1000)
    with pytest.raises(DBAPIError, match="append-only"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(delete(BalanceEntry).where(BalanceEntry.bucket_id == wallet))
    with pytest.raises(DBAPIError, match="append-only"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(update(BalanceEntry).values(delta=1))
    async with unit_of_work(rt.sessions) as s:
        assert await s.scalar(select(func.count()).select_from(BalanceEntry)) == 1
    assert await books(rt) == {"Li Lei wallet CNY": 1000}


async def test_an_entry_that_would_overdraw_or_cross_accounts_fails_its_statement(
    rt: Runtime,
) -> None:
    li, wallet = await _wallet(rt, "Li Lei", 1000)
    han, _han_wallet = await _wallet(rt, "Han Meimei", 10)
    with pytest.raises(DBAPIError):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(insert(BalanceEntry).values(**_entry(wallet, li, -1001, "too-much")))
    with pytest.raises(DBAPIError, match="another account"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(insert(BalanceEntry).values(**_entry(wallet, han, 5, "not-hers")))
    assert await books(rt) == {"Li Lei wallet CNY": 1000, "Han Meimei wallet CNY": 10}


async def test_a_refused_debit_writes_nothing_and_the_transaction_carries_on(
    rt: Runtime,
) -> None:
    li, _wallet_id = await _wallet(rt, "Li Lei", 100)
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(ledger.InsufficientBalance):
            await ledger.debit_wallet(
                s, account_id=li, currency=CNY, amount_minor=101,
                reason=EntryReason.payment, key="too-much",
            )
        w = await ledger.debit_wallet(
            s, account_id=li, currency=CNY, amount_minor=40,
            reason=EntryReason.payment, key="fine",
        )
        assert w.remaining == 60
        keys = set(await s.scalars(select(BalanceEntry.idempotency_key)))
    assert keys == {"topup-Li Lei", "fine"}
    assert await books(rt) == {"Li Lei wallet CNY": 60}


async def test_an_entry_for_no_bucket_is_refused_and_a_bucket_with_entries_stays(
    rt: Runtime,
) -> None:
    li, wallet = await _wallet(rt, "Li Lei", 1000)
    # PostgreSQL: the statement trigger (no foreign key there); SQLite: the row trigger.
    with pytest.raises(DBAPIError, match=r"unknown bucket|another account"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(insert(BalanceEntry).values(**_entry(uuid.uuid4(), li, 5, "nowhere")))
    with pytest.raises(DBAPIError, match=r"never deleted|FOREIGN KEY"):
        async with unit_of_work(rt.sessions) as s:
            await s.execute(delete(Bucket).where(Bucket.id == wallet))
    assert await books(rt) == {"Li Lei wallet CNY": 1000}
