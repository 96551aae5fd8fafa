"""Many requests at once, on the real database (SQLite queues writers with
BEGIN IMMEDIATE; PostgreSQL relies on the conditional UPDATE and the unique key)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, Bucket, BucketKind, EntryReason
from openmvno.runtime import Runtime
from tests.ledger.helpers import books, make_account

CNY = "CNY"


async def _accounts(rt: Runtime, *names: str) -> list[uuid.UUID]:
    async with unit_of_work(rt.sessions) as s:
        return [(await make_account(s, name)).id for name in names]


async def test_fifty_parallel_debits_never_overdraw(rt: Runtime) -> None:
    (li,) = await _accounts(rt, "Li Lei")
    initial, amount = 1000, 30
    async with unit_of_work(rt.sessions) as s:
        await ledger.credit_wallet(
            s, account_id=li, currency=CNY, amount_minor=initial, reason=EntryReason.topup, key="t"
        )

    async def debit(i: int) -> bool:
        try:
            async with unit_of_work(rt.sessions) as s:
                await ledger.debit_wallet(
                    s, account_id=li, currency=CNY, amount_minor=amount,
                    reason=EntryReason.payment, key=f"pay-{i}",
                )
        except ledger.InsufficientBalance:
            return False
        return True

    results = await asyncio.gather(*(debit(i) for i in range(50)))
    succeeded = sum(results)
    assert succeeded == initial // amount == 33
    assert await books(rt) == {"Li Lei wallet CNY": initial - succeeded * amount}
    async with unit_of_work(rt.sessions) as s:
        entries = await s.scalar(select(func.count()).select_from(BalanceEntry))
    assert entries == 1 + succeeded  # refused debits leave no entry behind


async def test_fifty_parallel_posts_with_one_key_count_once(rt: Runtime) -> None:
    (li,) = await _accounts(rt, "Li Lei")
    async with unit_of_work(rt.sessions) as s:
        wallet_id = (await ledger.wallet(s, account_id=li, currency=CNY)).id

    async def post() -> bool:
        async with unit_of_work(rt.sessions) as s:
            return await ledger.post(
                s, bucket_id=wallet_id, account_id=li, delta=700,
                reason=EntryReason.topup, key="webhook:evt_1",
            )

    results = await asyncio.gather(*(post() for _ in range(50)))
    assert sum(results) == 1
    assert await books(rt) == {"Li Lei wallet CNY": 700}
    async with unit_of_work(rt.sessions) as s:
        keys = await s.scalars(select(BalanceEntry.idempotency_key))
        assert list(keys) == ["webhook:evt_1"]


async def test_fifty_parallel_first_uses_create_one_wallet(rt: Runtime) -> None:
    (li,) = await _accounts(rt, "Li Lei")

    async def top_up(i: int) -> None:
        async with unit_of_work(rt.sessions) as s:
            await ledger.credit_wallet(
                s, account_id=li, currency=CNY, amount_minor=10, reason=EntryReason.topup,
                key=f"t-{i}",
            )

    await asyncio.gather(*(top_up(i) for i in range(50)))
    assert await books(rt) == {"Li Lei wallet CNY": 500}
    async with unit_of_work(rt.sessions) as s:
        wallets = await s.scalar(
            select(func.count()).select_from(Bucket).where(Bucket.kind == BucketKind.money)
        )
    assert wallets == 1


async def test_opposite_transfers_at_once_neither_deadlock_nor_lose_money(rt: Runtime) -> None:
    li, han = await _accounts(rt, "Li Lei", "Han Meimei")
    async with unit_of_work(rt.sessions) as s:
        for who in (li, han):
            await ledger.credit_wallet(
                s, account_id=who, currency=CNY, amount_minor=1000, reason=EntryReason.topup,
                key=f"t-{who}",
            )

    async def transfer(i: int) -> bool:
        a, b = (li, han) if i % 2 else (han, li)
        try:
            async with unit_of_work(rt.sessions) as s:
                await ledger.transfer_wallet(
                    s, from_account_id=a, to_account_id=b, currency=CNY,
                    amount_minor=100 + i, key=f"x-{i}",
                )
        except ledger.InsufficientBalance:
            return False
        return True

    done = await asyncio.gather(*(transfer(i) for i in range(40)))
    net_to_han = sum((100 + i) * (1 if i % 2 else -1) for i in range(40) if done[i])
    assert await books(rt) == {
        "Li Lei wallet CNY": 1000 - net_to_han,
        "Han Meimei wallet CNY": 1000 + net_to_han,
    }
