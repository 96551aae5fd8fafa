"""Payment API bodies and views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from openmvno.config import PaymentMethod
from openmvno.fields import Strict


class PaymentIn(Strict):
    method: PaymentMethod


class AttemptOut(BaseModel):
    id: uuid.UUID
    method: str
    provider: str
    state: str
    amount_minor: int
    currency: str
    failure_code: str | None
    failure_reason: str | None
    next_action: dict[str, Any]
    """What the payer does next: open a page, scan a QR, transfer with a reference."""
    created_at: datetime


class PaymentStarted(BaseModel):
    attempt: AttemptOut
    order_state: str
    next_action: dict[str, Any]


class MethodOut(BaseModel):
    method: str
    name: str


class WebhookOut(BaseModel):
    outcome: str
