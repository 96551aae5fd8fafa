"""/api/v1/cards (saved payment cards) and /api/v1/wallet/auto-topup (isAutoTopup).

Saving a card: ``POST /cards/setup`` answers the provider's hosted page (``url``) or, on
Stripe, a client secret for Stripe.js / the mobile SDK; the card appears in
``GET /cards`` once the payer has finished there. Only brand, last four digits and
expiry are ever shown (or kept)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from openmvno.channels.api.schemas import PROBLEMS
from openmvno.fields import MinorAmount, PositiveMinorAmount, Strict
from openmvno.payments import auto_topup, cards
from openmvno.payments.auto_topup import MAX_PER_MONTH_LIMIT, AutoTopupView
from openmvno.runtime import Runtime
from openmvno.staff import runtime_settings
from openmvno.web.deps import RT, Me, Session

router = APIRouter(prefix="/api/v1", tags=["cards"], responses=PROBLEMS)  # type: ignore[arg-type]


class SavedCardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool
    expires_soon: bool = Field(description="The card's last month is this month or next")
    created_at: datetime


class CardsOut(BaseModel):
    cards: list[SavedCardOut]


class CardSetupOut(BaseModel):
    setup_id: uuid.UUID
    url: str | None = Field(description="The provider's hosted page that saves the card")
    next_action: dict[str, Any] = Field(
        description='{"type": "redirect", "url": …} or {"type": "stripe_client_secret", …}'
    )


class AutoTopupIn(Strict):
    enabled: bool = Field(strict=True)
    threshold_minor: MinorAmount = Field(description="Top up when the wallet holds less")
    amount_minor: PositiveMinorAmount = Field(description="How much each top-up adds")
    card_id: uuid.UUID | None = Field(default=None, description="One of my cards; null: default")
    max_per_month: int | None = Field(default=None, strict=True, ge=1, le=MAX_PER_MONTH_LIMIT)


class AutoTopupOut(BaseModel):
    enabled: bool
    currency: str
    threshold_minor: int
    amount_minor: int
    max_per_month: int
    used_this_month: int
    card_id: uuid.UUID | None = Field(description="The chosen card; null: the default card")
    card_brand: str | None
    card_last4: str | None
    last_failure_code: str | None
    card_switched_off: bool = Field(
        default=False,
        description="The operator has switched payment by card off for now: no top-up is "
        "charged until it is back",
    )


def _card(c: cards.SavedCard) -> SavedCardOut:
    return SavedCardOut(
        id=c.id, brand=c.brand, last4=c.last4, exp_month=c.exp_month, exp_year=c.exp_year,
        is_default=c.is_default, expires_soon=cards.expires_soon(c), created_at=c.created_at,
    )


def _topup(v: AutoTopupView, rt: Runtime) -> AutoTopupOut:
    return AutoTopupOut(**v.__dict__, card_switched_off=auto_topup.waiting_for_cards(rt))


@router.get("/cards")
async def list_cards(session: Session, rt: RT, me: Me) -> CardsOut:
    """My saved cards, the default first (a setup I just finished is picked up here)."""
    await cards.finish_open_setups(rt, account_id=me.id, reader=session)
    return CardsOut(cards=[_card(c) for c in await cards.list_cards(session, account_id=me.id)])


@router.post("/cards/setup", status_code=201)
async def start_setup(rt: RT, me: Me) -> CardSetupOut:
    """Start saving a card: open ``url`` (the provider's page); it comes back to the portal."""
    setup = await cards.start_setup(rt, account_id=me.id)
    url = setup.next_action.get("url") if setup.next_action.get("type") == "redirect" else None
    return CardSetupOut(setup_id=setup.id, url=url, next_action=setup.next_action)


@router.delete("/cards/{card_id}", status_code=204)
async def remove_card(card_id: uuid.UUID, session: Session, me: Me) -> Response:
    """Remove one of my cards: it is never charged again, and the provider forgets it."""
    await cards.remove_card(session, account_id=me.id, card_id=card_id)
    return Response(status_code=204)


@router.post("/cards/{card_id}/default")
async def make_default(card_id: uuid.UUID, session: Session, me: Me) -> SavedCardOut:
    """Make one of my cards the default (renewals and top-ups charge it)."""
    return _card(await cards.set_default(session, account_id=me.id, card_id=card_id))


@router.get("/wallet/auto-topup")
async def get_auto_topup(session: Session, rt: RT, me: Me) -> AutoTopupOut:
    """My wallet's auto top-up: threshold, amount, card, how many times this month, and
    whether the operator has switched payment by card off for now."""
    await runtime_settings.refresh(session, rt)
    return _topup(await auto_topup.view(
        session, account_id=me.id, currency=rt.settings.default_currency,
        default_max=rt.settings.auto_topup_max_per_month,
    ), rt)


@router.put("/wallet/auto-topup")
async def put_auto_topup(body: AutoTopupIn, session: Session, rt: RT, me: Me) -> AutoTopupOut:
    """Turn auto top-up on or off: below ``threshold_minor`` the card is charged
    ``amount_minor``, at most ``max_per_month`` times a calendar month."""
    await runtime_settings.refresh(session, rt)
    return _topup(await auto_topup.set_auto_topup(
        session, account_id=me.id, currency=rt.settings.default_currency,
        enabled=body.enabled, threshold_minor=body.threshold_minor,
        amount_minor=body.amount_minor, card_id=body.card_id, max_per_month=body.max_per_month,
        default_max=rt.settings.auto_topup_max_per_month,
    ), rt)
