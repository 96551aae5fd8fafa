"""API shapes for balances (responses only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from openmvno.ledger.models import BucketKind
from openmvno.ledger.service import LineBalance


class BucketOut(BaseModel):
    id: uuid.UUID
    kind: BucketKind
    unit: str = Field(description="bytes | seconds | count")
    remaining: int
    total: int = Field(description="What the bucket was granted with, in `unit`")
    remaining_text: str = Field(description="e.g. `1.5 GB`, `100 分钟`")
    total_text: str
    valid_from: datetime
    valid_until: datetime | None
    valid_until_text: str
    active: bool = Field(description="False when it starts later (an early renewal)")


class TotalOut(BaseModel):
    kind: BucketKind
    unit: str
    remaining: int
    remaining_text: str


class BalancePlanOut(BaseModel):
    code: str
    name: str


class WalletOut(BaseModel):
    currency: str
    balance_minor: int
    balance_text: str


class LineBalanceOut(BaseModel):
    line_id: uuid.UUID
    msisdn: str
    plan: BalancePlanOut | None
    expires_at: datetime | None
    expires_at_text: str
    auto_renew: bool
    next_renewal_at: datetime | None = Field(description="The expiry when auto-renew is on")
    buckets: list[BucketOut]
    totals: list[TotalOut] = Field(description="Usable now, per kind")
    wallet: WalletOut


def line_balance_out(b: LineBalance) -> LineBalanceOut:
    """Render the service's :class:`LineBalance` for the API."""
    return LineBalanceOut(
        line_id=b.line_id,
        msisdn=b.msisdn,
        plan=BalancePlanOut(code=b.plan.code, name=b.plan.name) if b.plan else None,
        expires_at=b.expires_at,
        expires_at_text=b.expires_at_text,
        auto_renew=b.auto_renew,
        next_renewal_at=b.next_renewal_at,
        buckets=[
            BucketOut(
                id=x.id,
                kind=x.kind,
                unit=x.unit,
                remaining=x.remaining,
                total=x.initial,
                remaining_text=x.remaining_text,
                total_text=x.initial_text,
                valid_from=x.valid_from,
                valid_until=x.valid_until,
                valid_until_text=x.valid_until_text,
                active=x.active,
            )
            for x in b.buckets
        ],
        totals=[
            TotalOut(
                kind=t.kind, unit=t.unit, remaining=t.remaining, remaining_text=t.remaining_text
            )
            for t in b.totals
        ],
        wallet=WalletOut(
            currency=b.wallet.currency, balance_minor=b.wallet.minor, balance_text=b.wallet.text
        ),
    )
