"""The provisioning job: the outbox handler that tells the network about a fulfilled
order and records the outcome on it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from openmvno.adapters.provisioning import ProvisioningFailed, ProvisioningRequest, provisioner
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.notifications.models import OutboxMessage
from openmvno.orders.models import Order, OrderKind, ProvisioningState
from openmvno.runtime import Runtime


async def provision(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for ``OutboxKind.provision``: tell the network, then record the
    outcome on the order (``provisioning`` done / failed, visible to subscriber and agent).
    A failure raises, so the worker retries with backoff."""
    order_id = uuid.UUID(str(message.payload["order_id"]))
    async with unit_of_work(rt.sessions, readonly=True) as session:  # one statement
        found = (await session.execute(
            select(Order.kind, Order.line_id, Line.iccid, Line.msisdn, Plan.code)
            .outerjoin(Line, Line.id == Order.line_id)
            .outerjoin(Plan, Plan.id == Order.plan_id)
            .where(Order.id == order_id)
        )).one_or_none()
    if found is None:
        return "order gone"
    kind, line_id, iccid, msisdn, plan_code = found
    request = ProvisioningRequest(
        order_id=order_id, kind=OrderKind(kind).value, line_id=line_id, iccid=iccid,
        msisdn=msisdn, plan_code=plan_code,
    )
    try:
        reference = await provisioner(rt.settings).provision(request)
    except ProvisioningFailed as exc:
        await _set_provisioning(rt, order_id, ProvisioningState.failed, error=str(exc))
        raise
    await _set_provisioning(rt, order_id, ProvisioningState.done, reference=reference)
    return reference


async def _set_provisioning(
    rt: Runtime, order_id: uuid.UUID, state: ProvisioningState, *, reference: str = "",
    error: str = "",
) -> None:
    async with unit_of_work(rt.sessions) as session:
        order = await session.get(Order, order_id)
        if order is None:
            return
        order.provisioning = state
        extra = {"provisioning_ref": reference} if reference else {"provisioning_error": error}
        order.result = {**order.result, **extra}


__all__ = ["provision"]
