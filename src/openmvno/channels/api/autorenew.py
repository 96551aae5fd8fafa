"""/api/v1/lines/{id}/auto-renew: see and change a line's auto-renewal (自动续费)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.fields import Strict
from openmvno.renewals import scheduler
from openmvno.renewals import service as renewals
from openmvno.renewals.service import AutoRenewView
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings
from openmvno.web.deps import RT, Language, Me, Session

router = APIRouter(prefix="/api/v1", tags=["auto-renew"], responses=PROBLEMS)  # type: ignore[arg-type]


class CardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    usable: bool


class AutoRenewOut(BaseModel):
    line_id: uuid.UUID
    enabled: bool
    funding: Literal["wallet", "card"]
    card: CardOut | None = Field(description="The saved card charged when funding is card")
    wallet_fallback: bool = Field(description="A declined card falls back to the wallet")
    plan_code: str | None
    plan_name: str | None
    amount_minor: int | None = Field(description="What the next renewal costs (minor units)")
    currency: str | None
    next_renewal_at: datetime | None = Field(
        description="When the next period starts (the line's expiry); null when off"
    )
    next_attempt_at: datetime | None = Field(description="When the charge is attempted next")
    last_failure: str = Field(description="Why the last attempt failed (empty when none)")
    switched_off: list[Literal["wallet", "card"]] = Field(
        default_factory=list,
        description="Methods this renewal would use (its funding, and the wallet when a card "
        "may fall back to it) that the operator has switched off for now: no saved card is "
        "charged / no wallet debited while off",
    )
    funding_switched_off: bool = Field(
        default=False, description="The funding source itself is switched off for now"
    )


class AutoRenewIn(Strict):
    enabled: bool = Field(strict=True)
    funding: Literal["wallet", "card"] | None = None
    card_id: uuid.UUID | None = Field(default=None, description="One of my saved cards")
    wallet_fallback: bool | None = Field(default=None, strict=True)


def _out(v: AutoRenewView, language: str, rt: Runtime) -> AutoRenewOut:
    card = None
    if v.card is not None:
        card = CardOut(id=v.card.id, brand=v.card.brand, last4=v.card.last4,
                       exp_month=v.card.exp_month, exp_year=v.card.exp_year, usable=v.card.usable)
    return AutoRenewOut(
        line_id=v.line_id, enabled=v.enabled, funding=v.funding.value, card=card,
        wallet_fallback=v.wallet_fallback, plan_code=v.plan_code, plan_name=v.plan_name(language),
        amount_minor=v.amount_minor, currency=v.currency, next_renewal_at=v.next_renewal_at,
        next_attempt_at=v.next_attempt_at, last_failure=v.last_failure,
        **_switched(v, rt),
    )


def _switched(v: AutoRenewView, rt: Runtime) -> dict[str, Any]:
    off = scheduler.switched_off(rt, funding=v.funding.value, wallet_fallback=v.wallet_fallback)
    return {"switched_off": off, "funding_switched_off": v.funding.value in off}


@router.get("/lines/{line_id}/auto-renew")
async def get_auto_renew(
    line_id: uuid.UUID, session: Session, rt: RT, me: Me, language: Language
) -> AutoRenewOut:
    """My line's auto-renewal: on or off, how it is paid, the next renewal date and amount,
    and whether the operator has switched its payment method off for now. Anyone else's
    line is 404."""
    view = await renewals.auto_renew_view(session, account_id=me.id, line_id=line_id)
    await runtime_settings.refresh(session, rt)
    return _out(view, language, rt)


@router.put("/lines/{line_id}/auto-renew")
async def put_auto_renew(
    line_id: uuid.UUID, body: AutoRenewIn, session: Session, rt: RT, me: Me, language: Language
) -> AutoRenewOut:
    """Turn auto-renewal on or off and choose the wallet or a saved card (`card_id`) to pay
    it; `wallet_fallback` lets a declined card fall back to the wallet. Fields left out
    keep their value."""
    view = await renewals.set_auto_renew(
        session, account_id=me.id, line_id=line_id, enabled=body.enabled, funding=body.funding,
        card_id=body.card_id, wallet_fallback=body.wallet_fallback, settings=rt.settings,
    )
    await runtime_settings.refresh(session, rt)
    return _out(view, language, rt)
