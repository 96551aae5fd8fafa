"""Auto top-up of the wallet: below the threshold the saved card is charged the set
amount and the wallet credited through the ledger, at most N times a calendar month, a
declined card backs off, a crash between charge and credit never charges or credits
twice; the ``auto_topup_done`` and ``card_expiring`` notices once each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openmvno.adapters.payments.sandbox_models import SandboxCharge
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, EntryReason
from openmvno.notifications.models import Notice
from openmvno.payments import auto_topup, cards
from openmvno.payments.auto_topup import AutoTopupRun, TopupState
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.payments.card_helpers import (
    DECLINES_LATER,
    EXPIRES_NEXT_MONTH,
    SAVES,
    new_account,
    save_card,
)


async def _setup(rt: Runtime, account: uuid.UUID, *, threshold: int = 2000, amount: int = 5000,
                 n: int = 2) -> None:
    async with unit_of_work(rt.sessions) as s:
        await auto_topup.set_auto_topup(
            s, account_id=account, currency="CNY", enabled=True, threshold_minor=threshold,
            amount_minor=amount, max_per_month=n,
        )


async def _wallet(rt: Runtime, account: uuid.UUID) -> int:
    async with unit_of_work(rt.sessions) as s:
        return (await ledger.wallet(s, account_id=account, currency="CNY")).remaining


async def _spend(rt: Runtime, account: uuid.UUID, amount: int) -> None:
    async with unit_of_work(rt.sessions) as s:
        await ledger.debit_wallet(s, account_id=account, currency="CNY", amount_minor=amount,
                                  reason=EntryReason.usage, key=f"spend:{uuid.uuid4()}")


async def _count(rt: Runtime, model: Any, *where: Any) -> int:
    async with rt.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_below_the_threshold_the_card_tops_up_the_wallet_at_most_n_times_a_month(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    await _setup(rt, account, n=2)
    assert await auto_topup.run_due(rt) == 1  # an empty wallet is below 20.00
    assert await _wallet(rt, account) == 5000
    assert await auto_topup.run_due(rt) == 0  # 50.00 is not below the threshold
    await _spend(rt, account, 4000)
    assert await auto_topup.run_due(rt) == 1
    assert await _wallet(rt, account) == 6000
    await _spend(rt, account, 5000)
    assert await auto_topup.run_due(rt) == 0  # N = 2 this month
    assert await _wallet(rt, account) == 1000
    assert await _count(rt, SandboxCharge) == 2
    async with unit_of_work(rt.sessions) as s:
        shown = await auto_topup.view(s, account_id=account, currency="CNY", default_max=3)
    assert (shown.used_this_month, shown.card_last4) == (2, "4242")
    frozen.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # a new month in Shanghai
    assert await auto_topup.run_due(rt) == 1
    assert await _wallet(rt, account) == 6000
    entries = await _count(rt, BalanceEntry, BalanceEntry.reason == EntryReason.topup)
    assert entries == 3
    async with rt.sessions() as s:
        notices = (await s.scalars(select(Notice).where(Notice.event == "auto_topup_done"))).all()
    assert len(notices) == 3


async def test_a_declined_card_backs_off_and_counts_toward_the_month(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, DECLINES_LATER)
    await _setup(rt, account, n=3)
    assert await auto_topup.run_due(rt) == 1
    assert await _wallet(rt, account) == 0
    assert await auto_topup.run_due(rt) == 0  # backing off
    async with unit_of_work(rt.sessions) as s:
        shown = await auto_topup.view(s, account_id=account, currency="CNY", default_max=3)
    assert shown.last_failure_code == "insufficient_funds" and shown.used_this_month == 1
    frozen.advance(hours=25)
    assert await auto_topup.run_due(rt) == 1
    assert await _count(rt, AutoTopupRun, AutoTopupRun.state == TopupState.declined) == 2


async def test_a_crash_after_the_charge_neither_charges_nor_credits_twice(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    await _setup(rt, account)

    async def crash(*_: Any) -> None:
        raise RuntimeError("killed between the charge and the credit")

    original = auto_topup._settle
    auto_topup._settle = crash  # type: ignore[assignment]
    try:
        with pytest.raises(RuntimeError):
            await auto_topup.run_due(rt)
    finally:
        auto_topup._settle = original
    assert await _count(rt, SandboxCharge) == 1 and await _wallet(rt, account) == 0
    assert await auto_topup.run_due(rt) == 0  # still claimed by the dead worker
    frozen.advance(minutes=6)  # its lease runs out
    assert await auto_topup.run_due(rt) == 1
    assert await _wallet(rt, account) == 5000
    assert await _count(rt, SandboxCharge) == 1
    assert await _count(rt, AutoTopupRun) == 1


async def test_turning_it_on_needs_a_saved_card(rt: Runtime) -> None:
    account = await new_account(rt)
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(InvalidInput) as refused:
            await auto_topup.set_auto_topup(
                s, account_id=account, currency="CNY", enabled=True, threshold_minor=100,
                amount_minor=1000,
            )
    assert refused.value.code == "no_saved_card"


async def test_card_expiring_notice_once_per_card_and_expiry(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, EXPIRES_NEXT_MONTH)
    await save_card(rt, client, account, SAVES)  # 12/2039: not soon
    assert await cards.notify_expiring(rt) == 1
    frozen.advance(hours=2)
    assert await cards.notify_expiring(rt) == 0
    async with rt.sessions() as s:
        [notice] = (await s.scalars(select(Notice).where(Notice.event == "card_expiring"))).all()
    assert notice.key.endswith(":2026-12")


async def test_two_workers_at_once_top_up_once(
    rt: Runtime, client: httpx.AsyncClient, settings: Any, frozen: FrozenClock
) -> None:
    """Two worker processes (two runtimes, two connection pools) run the job at the same
    moment over the same due wallets: each wallet is topped up once."""
    import asyncio

    from openmvno.runtime import build_runtime

    accounts = [await new_account(rt, f"Worker test {i}") for i in range(6)]
    for account in accounts:
        await save_card(rt, client, account, SAVES)
        await _setup(rt, account, n=3)
    other = build_runtime(settings)
    try:
        done = await asyncio.gather(auto_topup.run_due(rt), auto_topup.run_due(other))
        assert sum(done) == 6
        assert await auto_topup.run_due(rt) + await auto_topup.run_due(other) == 0
    finally:
        await other.close()
    assert [await _wallet(rt, a) for a in accounts] == [5000] * 6
    assert await _count(rt, SandboxCharge) == 6 and await _count(rt, AutoTopupRun) == 6
