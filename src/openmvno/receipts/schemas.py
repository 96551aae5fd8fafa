"""Receipt API views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ReceiptOut(BaseModel):
    id: uuid.UUID
    number: str
    order_id: uuid.UUID
    buyer: str
    msisdn: str | None
    items: list[dict[str, Any]]
    total_minor: int
    currency: str
    total: str
    payment_method: str
    issued_at: datetime
    html_url: str
    pdf_url: str


class ReceiptPage(BaseModel):
    items: list[ReceiptOut]
    total: int
