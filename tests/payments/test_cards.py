"""Saved cards on the sandbox: saving through the hosted page, the default card,
removing (detached at the provider by the worker), and off-session charges with
``charge_cards`` — set-based, idempotent per key, a crash in the middle never charging
twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from openmvno.adapters.payments import SavedCharge, SavedChargeResult
from openmvno.adapters.payments.sandbox_models import SandboxCard, SandboxCharge
from openmvno.db import unit_of_work
from openmvno.payments import cards
from openmvno.payments.cards import CardCharge, SetupState
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.payments.card_helpers import (
    DECLINES_LATER,
    EXPIRES_NEXT_MONTH,
    REFUSED,
    SAVES,
    new_account,
    save_card,
)


async def _cards(rt: Runtime, account_id: uuid.UUID) -> list[cards.SavedCard]:
    async with unit_of_work(rt.sessions) as s:
        return await cards.list_cards(s, account_id=account_id)


async def _charged(rt: Runtime) -> int:
    async with rt.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(SandboxCharge)) or 0)


async def test_a_saved_card_keeps_only_brand_last4_expiry_and_token(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    account = await new_account(rt)
    setup = await save_card(rt, client, account, SAVES)
    assert setup.state == SetupState.succeeded
    [card] = await _cards(rt, account)
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2039)
    assert card.is_default and card.card_ref.startswith("sbcard_")
    async with rt.engine.connect() as conn:
        dump = ""
        for table in ("saved_cards", "sandbox_cards", "sandbox_setups", "card_setups"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            dump += repr(rows)
    assert "4242424242424242" not in dump and "4242 4242" not in dump and "12/39" not in dump


async def test_a_card_refused_when_saving_is_not_saved(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    account = await new_account(rt)
    setup = await save_card(rt, client, account, REFUSED)
    assert (setup.state, setup.failure_code) == (SetupState.failed, "declined")
    assert await _cards(rt, account) == []


async def test_the_expiring_test_card_expires_at_the_end_of_next_month(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, EXPIRES_NEXT_MONTH)
    [card] = await _cards(rt, account)
    assert (card.exp_year, card.exp_month) == (2026, 12)  # the clock says 25 November 2026
    assert cards.expires_soon(card)
    charge = CardCharge(account_id=account, amount_minor=500, currency="CNY", idempotency_key="exp-1")
    [ok] = await cards.charge_cards(rt, [charge])
    assert ok.status == "succeeded"
    frozen.now = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    [late] = await cards.charge_cards(rt, [CardCharge(account, 500, "CNY", "exp-2")])
    assert (late.status, late.decline_code) == ("declined", "expired")


async def test_default_card_changes_and_removal_promotes_another(
    rt: Runtime, client: httpx.AsyncClient, deliver: Any
) -> None:
    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    await save_card(rt, client, account, "5555 5555 5555 4444")
    first, second = sorted(await _cards(rt, account), key=lambda c: c.last4)
    assert first.is_default and not second.is_default
    async with unit_of_work(rt.sessions) as s:
        await cards.set_default(s, account_id=account, card_id=second.id)
    listed = await _cards(rt, account)
    assert [c.last4 for c in listed] == ["4444", "4242"] and listed[0].is_default
    async with unit_of_work(rt.sessions) as s:
        await cards.remove_card(s, account_id=account, card_id=second.id)
    [left] = await _cards(rt, account)
    assert left.last4 == "4242" and left.is_default
    await deliver()
    async with rt.sessions() as s:
        detached = await s.scalar(
            select(SandboxCard.detached_at).where(SandboxCard.token == second.card_ref)
        )
    assert detached is not None
    # A removed card is never charged again, even when asked for by id.
    [refused] = await cards.charge_cards(
        rt, [CardCharge(account, 100, "CNY", "after-remove", card_id=second.id)]
    )
    assert (refused.status, refused.decline_code, refused.attempt_id is not None) == (
        "declined", "card_removed", True
    )


async def test_another_accounts_card_is_not_found(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    owner, other = await new_account(rt), await new_account(rt, "Li Lei")
    await save_card(rt, client, owner, SAVES)
    [card] = await _cards(rt, owner)
    async with unit_of_work(rt.sessions) as s:
        with pytest.raises(cards.CardNotFound):
            await cards.remove_card(s, account_id=other, card_id=card.id)
    [charge] = await cards.charge_cards(rt, [CardCharge(other, 100, "CNY", "k", card_id=card.id)])
    assert charge.status == "declined" and await _charged(rt) == 0


async def test_charge_cards_in_a_batch_and_again_with_the_same_keys(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    good, poor, none = (await new_account(rt), await new_account(rt, "B"),
                        await new_account(rt, "C"))
    await save_card(rt, client, good, SAVES)
    await save_card(rt, client, poor, DECLINES_LATER)
    batch = [
        CardCharge(good, 3000, "CNY", "renewal:good:1", "Plan renewal"),
        CardCharge(poor, 3000, "CNY", "renewal:poor:1"),
        CardCharge(none, 3000, "CNY", "renewal:none:1"),
    ]
    results = await cards.charge_cards(rt, batch)
    assert [(r.key, r.status, r.decline_code) for r in results] == [
        ("renewal:good:1", "succeeded", None),
        ("renewal:poor:1", "declined", "insufficient_funds"),
        ("renewal:none:1", "declined", "no_saved_card"),
    ]
    assert results[0].reference and results[0].reference.startswith("sbch_")
    assert await _charged(rt) == 2
    again = await cards.charge_cards(rt, batch)
    assert again == results
    assert await _charged(rt) == 2
    async with rt.sessions() as s:
        attempts = (await s.scalars(select(PaymentAttempt))).all()
    assert sorted(a.state for a in attempts) == sorted(
        [AttemptState.succeeded, AttemptState.failed, AttemptState.failed]
    )
    assert all(a.order_id is None and a.idempotency_key for a in attempts)
    assert results[0].payment_attempt_id == results[0].attempt_id


class _Crashing:
    """The provider charges, then the answer is lost (a crash before it is recorded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge_saved(self, requests: list[SavedCharge]) -> list[SavedChargeResult]:
        self.calls.append([r.idempotency_key for r in requests])
        await self.inner.charge_saved(requests)
        raise ConnectionError("the answer never came back")


async def test_a_lost_answer_is_asked_again_and_never_charges_twice(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    from openmvno.adapters.payments.registry import payment_provider

    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    real = payment_provider(rt.settings, rt)
    crashing = _Crashing(real)
    rt.extras["payment_provider"] = crashing
    charge = CardCharge(account, 1200, "CNY", "topup:1")
    [first] = await cards.charge_cards(rt, [charge])
    assert (first.status, first.decline_code) == ("pending", "provider_unavailable")
    rt.extras["payment_provider"] = real
    [second] = await cards.charge_cards(rt, [charge])
    assert second.status == "succeeded" and second.attempt_id == first.attempt_id
    assert crashing.calls == [[f"saved-{first.attempt_id}"]]
    async with rt.sessions() as s:
        amounts = (await s.scalars(select(SandboxCharge.amount_minor))).all()
    assert amounts == [1200]


async def test_sandbox_charge_saved_is_one_statement_per_batch(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    from sqlalchemy import event

    from openmvno.adapters.payments.registry import payment_provider

    account = await new_account(rt)
    await save_card(rt, client, account, SAVES)
    [card] = await _cards(rt, account)
    provider = payment_provider(rt.settings, rt)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(rt.engine.sync_engine, "before_cursor_execute", count)
    try:
        results = await provider.charge_saved([
            SavedCharge(card.card_ref, card.customer_ref, 100 + i, "CNY", f"bulk-{i}")
            for i in range(300)
        ])
    finally:
        event.remove(rt.engine.sync_engine, "before_cursor_execute", count)
    assert [r.status for r in results] == ["succeeded"] * 300
    assert len([s for s in statements if "sandbox_charges" in s]) == 1
