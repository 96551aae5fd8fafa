"""The provisioning job: the outbox handler that tells the network about a fulfilled
order and records the outcome on it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, Table, bindparam, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from openmvno.adapters.provisioning import ProvisioningFailed, ProvisioningRequest, provisioner
from openmvno.catalog.models import Plan
from openmvno.db import Base, execute_alone, unit_of_work
from openmvno.lines.models import Line
from openmvno.notifications.models import OutboxMessage
from openmvno.orders.models import Order, OrderKind, ProvisioningState
from openmvno.runtime import Runtime

_WHAT_TO_PROVISION = (
    select(Order.kind, Order.line_id, Line.iccid, Line.msisdn, Plan.code)
    .outerjoin(Line, Line.id == Order.line_id)
    .outerjoin(Plan, Plan.id == Order.plan_id)
    .where(Order.id == bindparam("o_id"))
)
"""The order, its line and its plan in one statement (built once, like
:data:`_RECORD_OUTCOME`)."""


async def provision(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for ``OutboxKind.provision``: tell the network, then record the
    outcome on the order (``provisioning`` done / failed, visible to subscriber and agent).
    A failure raises, so the worker retries with backoff."""
    order_id = uuid.UUID(str(message.payload["order_id"]))
    async with unit_of_work(rt.sessions, readonly=True) as session:  # one statement
        found = (await session.execute(_WHAT_TO_PROVISION, {"o_id": order_id})).one_or_none()
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
    """Record the outcome on the order: one UPDATE that merges it into ``orders.result``
    in the database (its own transaction; on PostgreSQL one round trip)."""
    extra = {"provisioning_ref": reference} if reference else {"provisioning_error": error}
    await execute_alone(rt.sessions, _RECORD_OUTCOME,
                        {"o_id": order_id, "o_state": state, "o_extra": extra})


class _JsonMerged(FunctionElement[Any]):
    """A JSON column with the keys of the JSON object ``extra`` set (a JSON object merge,
    in SQL; a value that is not an object counts as ``{}``)."""

    type = JSON()
    inherit_cache = True


ORDERS: Table = Base.metadata.tables[Order.__tablename__]
_RECORD_OUTCOME = (
    update(ORDERS).where(ORDERS.c.id == bindparam("o_id"))
    .values(provisioning=bindparam("o_state"),
            result=_JsonMerged(ORDERS.c.result, bindparam("o_extra", type_=JSON())))
)
"""Built once: building a statement for each message cost more CPU than running it."""


@compiles(_JsonMerged, "postgresql")
def _json_merged_postgresql(element: _JsonMerged, compiler: Any, **kw: Any) -> str:
    column, extra = element.clauses
    current = compiler.process(column, **kw)
    return (f"(CASE WHEN json_typeof({current}) = 'object' THEN CAST({current} AS JSONB)"
            f" ELSE '{{}}'::JSONB END || CAST({compiler.process(extra, **kw)} AS JSONB))::JSON")


@compiles(_JsonMerged, "sqlite")
def _json_merged_sqlite(element: _JsonMerged, compiler: Any, **kw: Any) -> str:
    column, extra = element.clauses
    current = compiler.process(column, **kw)
    return (f"json_patch(CASE WHEN json_type({current}) = 'object' THEN {current} ELSE '{{}}' END,"
            f" {compiler.process(extra, **kw)})")


__all__ = ["provision"]
