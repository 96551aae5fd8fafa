"""Provider refunds go out from the worker, outside any transaction, and are retried
with the outbox's backoff until they complete, exactly once: the provider's idempotency
key is our refund id, so a retry after a lost answer finds the first refund."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openmvno.adapters.payments import ProviderRefund, RefundRefused
from openmvno.adapters.payments.registry import payment_provider
from openmvno.adapters.payments.sandbox import SandboxProvider
from openmvno.adapters.payments.sandbox_models import SandboxRefund
from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import pay_by_card
from tests.conftest import FrozenClock
from tests.orders.helpers import staff
from tests.payments.refund_helpers import (
    count,
    get_order,
    plan_order,
    refunds_of,
    sandbox_buyer,
    start_payment,
    stored_result,
)


class Flaky:
    """The sandbox behind a bad network: the first ``failures`` refund calls fail, either
    before reaching the sandbox or (``lost``) after the sandbox refunded, the answer lost
    on the way back."""

    def __init__(self, inner: SandboxProvider, *, failures: int, lost: bool) -> None:
        self.inner = inner
        self.name = inner.name
        self.failures = failures
        self.lost = lost
        self.keys: list[str] = []

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)

    async def refund(
        self, reference: str, amount_minor: int, idempotency_key: str
    ) -> ProviderRefund:
        self.keys.append(idempotency_key)
        if self.failures and not self.lost:
            self.failures -= 1
            raise httpx.ConnectError("connection refused")
        answer = await self.inner.refund(reference, amount_minor, idempotency_key)
        if self.failures:
            self.failures -= 1
            raise httpx.ReadTimeout("timed out waiting for the answer")
        return answer


async def _refunded_by_staff(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> tuple[str, dict[str, str]]:
    """A card-paid plan order, refunded by an agent; returns it and the agent's headers."""
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    assert (await pay_by_card(client, await start_payment(client, buyer, order_id))
            ).status_code == 303
    await deliver()
    agent = await staff(client, rt)
    r = await client.post(f"/api/v1/orders/{order_id}/refund", json={"reason": "faulty"},
                          headers=agent)
    assert r.status_code == 200, r.text
    return order_id, agent


async def _refund_job(rt: Runtime) -> OutboxMessage:
    async with unit_of_work(rt.sessions) as s:
        job = await s.scalar(select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.refund))
        assert job is not None
        return job


@pytest.mark.parametrize("lost", [False, True], ids=["refused-connection", "answer-lost"])
async def test_a_refund_that_fails_on_the_way_is_retried_and_paid_once(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any, frozen: FrozenClock, lost: bool
) -> None:
    sandbox = payment_provider(rt.settings, rt)
    assert isinstance(sandbox, SandboxProvider)
    flaky = Flaky(sandbox, failures=2, lost=lost)
    order_id, _ = await _refunded_by_staff(client, rt, deliver)
    rt.extras["payment_provider"] = flaky

    await deliver()
    [refund] = await refunds_of(rt, order_id)
    assert (refund.state, refund.attempts) == ("requested", 1)
    assert "Error" in refund.last_error or "Timeout" in refund.last_error
    job = await _refund_job(rt)
    assert (job.state, job.attempts) == (OutboxState.pending, 1)

    frozen.advance(seconds=5)  # the outbox's first backoff
    await deliver()
    assert (await refunds_of(rt, order_id))[0].attempts == 2
    frozen.advance(seconds=10)
    await deliver()
    [refund] = await refunds_of(rt, order_id)
    assert (refund.state, refund.attempts) == ("succeeded", 3)
    assert (await _refund_job(rt)).state == OutboxState.sent
    assert flaky.keys == [str(refund.id)] * 3  # one key, whatever the retries
    assert await count(rt, SandboxRefund) == 1  # never two refunds
    frozen.advance(hours=2)
    await deliver()
    assert await count(rt, SandboxRefund) == 1
    assert (await stored_result(rt, order_id))["refund"]["status"] == "succeeded"


async def test_a_refund_the_provider_refuses_fails_for_staff_and_is_not_retried(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any, frozen: FrozenClock
) -> None:
    class Refusing:
        name = "sandbox"
        calls = 0

        def __getattr__(self, item: str) -> Any:
            return getattr(sandbox, item)

        async def refund(self, reference: str, amount_minor: int, idempotency_key: str) -> Any:
            Refusing.calls += 1
            raise RefundRefused("charge_disputed")

    sandbox = payment_provider(rt.settings, rt)
    order_id, _ = await _refunded_by_staff(client, rt, deliver)
    rt.extras["payment_provider"] = Refusing()
    await deliver()
    frozen.advance(hours=2)
    await deliver()
    [refund] = await refunds_of(rt, order_id)
    assert (refund.state, refund.attempts, Refusing.calls) == ("failed", 1, 1)
    assert "charge_disputed" in refund.last_error
    result = await stored_result(rt, order_id)
    assert (result["refund"]["status"], result["refunds"][0]["state"]) == ("failed", "failed")
    assert await count(rt, SandboxRefund) == 0


async def test_the_order_shows_the_refund_to_its_owner(
    client: httpx.AsyncClient, rt: Runtime, deliver: Any
) -> None:
    buyer = await sandbox_buyer(client, rt)
    order_id = await plan_order(client, buyer)
    await pay_by_card(client, await start_payment(client, buyer, order_id))
    await deliver()
    await client.post(f"/api/v1/orders/{order_id}/refund", json={"reason": "faulty"},
                      headers=await staff(client, rt))
    await deliver()
    got = await get_order(client, buyer, order_id)
    assert got["state"] == "refunded"
    assert got["result"]["refund"]["status"] == "succeeded"
    assert got["result"]["refunds"][0]["state"] == "succeeded"
