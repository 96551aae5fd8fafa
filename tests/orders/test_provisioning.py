"""The provisioning job records its outcome on the order in one UPDATE: the outcome is
merged into what the order's result already holds, and a job whose order is gone is done
without touching anything."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from openmvno.db import unit_of_work
from openmvno.notifications.models import OutboxKind, OutboxMessage, OutboxState
from openmvno.orders.models import Order, ProvisioningState
from openmvno.orders.provisioning import provision
from openmvno.runtime import Runtime
from openmvno.worker.runner import drain
from tests.orders.helpers import paid_plan_order


async def _paid_plan_order(client: httpx.AsyncClient, rt: Runtime) -> uuid.UUID:
    _, created = await paid_plan_order(client, rt)
    return uuid.UUID(created["id"])


async def _job_of(rt: Runtime, order_id: uuid.UUID) -> OutboxMessage:
    async with unit_of_work(rt.sessions) as s:
        job = await s.scalar(select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.provision,
            OutboxMessage.payload["order_id"].as_string() == str(order_id)))
    assert job is not None
    return job


@pytest.mark.parametrize(("held", "kept"), [
    ({"receipt_id": "r-1", "note": "中文"}, {"receipt_id": "r-1", "note": "中文"}),
    ({"provisioning_error": "refused once"}, {"provisioning_error": "refused once"}),
    (["not", "an", "object"], {}),
    (None, {}),
])
async def test_the_outcome_is_merged_into_the_orders_result(
    client: httpx.AsyncClient, rt: Runtime, held: Any, kept: dict[str, str]
) -> None:
    order_id = await _paid_plan_order(client, rt)
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Order).where(Order.id == order_id).values(result=held))
    reference = await provision(rt, await _job_of(rt, order_id))
    assert reference.startswith("sbx-prov-")
    async with unit_of_work(rt.sessions) as s:
        got = await s.get(Order, order_id)
        assert got is not None
        assert got.provisioning is ProvisioningState.done
        assert got.result == {**kept, "provisioning_ref": reference}


async def test_a_job_whose_order_is_gone_is_done_and_changes_nothing(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    order_id = await _paid_plan_order(client, rt)
    job = await _job_of(rt, order_id)
    async with unit_of_work(rt.sessions) as s:
        before = {(o.id, o.provisioning, repr(o.result)) for o in await s.scalars(select(Order))}
        await s.execute(update(OutboxMessage).where(OutboxMessage.id == job.id).values(
            payload={**job.payload, "order_id": str(uuid.uuid4())}))  # nobody's order
    async with unit_of_work(rt.sessions) as s:
        moved = await s.get(OutboxMessage, job.id)
    assert moved is not None
    assert await provision(rt, moved) == "order gone"
    await drain(rt)
    async with unit_of_work(rt.sessions) as s:
        after = {(o.id, o.provisioning, repr(o.result)) for o in await s.scalars(select(Order))}
        assert after == before
        sent = await s.get(OutboxMessage, job.id)
        assert sent is not None and sent.state == OutboxState.sent
