"""Order API bodies and views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from openmvno import fields
from openmvno.fields import Msisdn, PlanCode, PositiveMinorAmount, Strict
from openmvno.orders.models import OrderKind, OrderState, ProvisioningState
from openmvno.payments.schemas import AttemptOut

Confirmation = Annotated[str, fields.text(64, min_length=1, pattern=r"^[\x21-\x7e]+$")]


class OrderIn(Strict):
    """What to buy. ``new_line``: plan_code. ``plan`` / ``addon``: line_id and plan_code.
    ``topup``: amount_minor. ``guest_topup`` (no login needed): msisdn and amount_minor,
    and the ``confirmation`` from the number look-up (then only the owner shown there can
    be credited; a 409 ``number_owner_changed`` if the number changed hands since)."""

    kind: OrderKind
    plan_code: PlanCode | None = None
    line_id: uuid.UUID | None = None
    amount_minor: PositiveMinorAmount | None = None
    msisdn: Msisdn | None = None
    confirmation: Confirmation | None = None


class RefundIn(Strict):
    reason: Annotated[str, fields.text(500, min_length=3)] = Field(
        description="Why the order is refunded (kept in the audit log)"
    )


class GuestLookupIn(Strict):
    msisdn: Msisdn


class GuestLookupOut(BaseModel):
    msisdn: str
    owner: str
    """Masked name of the line's owner, e.g. ``张*明``."""
    confirmation: str
    """Send it with the ``guest_topup`` order: only this owner can then be credited."""


class OrderOut(BaseModel):
    id: uuid.UUID
    number: str
    kind: OrderKind
    state: OrderState
    amount_minor: int
    currency: str
    amount: str
    description: str
    line_id: uuid.UUID | None
    msisdn: str | None
    failure_code: str | None
    failure_reason: str | None
    provisioning: ProvisioningState
    result: dict[str, Any]
    """What fulfilment did: new expiry, buckets granted, wallet balance, receipt, eSIM code."""
    payments: list[AttemptOut]
    created_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None
    cancelled_at: datetime | None
    refunded_at: datetime | None
    guest_token: str | None = None
    """A guest order, in the response that created it only: the secret of its link, the
    only way to the order (``/api/v1/guest/orders/{guest_token}``); it is not shown again."""
    guest_url: str | None = None
    """The order's address for the guest (API), in the creating response only."""
    result_page_url: str | None = None
    """The order's page for the guest (portal), in the creating response only."""


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int
