"""Auto-renew settings per line (contract 5): turn it on or off, choose the funding
source (the wallet, or a saved card with or without falling back to the wallet), and
see the next renewal date and amount. Channels (API, portal, SMS ``AUTO ON|OFF``, USSD)
call these two functions; only the line's owner may (anyone else's line is "not found").

The amount is the price of the plan the line bought (``lines.plan_id``); the renewal
date is the line's expiry, when the next period starts; the charge is attempted before
it (see :mod:`openmvno.renewals.schedule`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.config import Settings, get_settings
from openmvno.errors import Conflict, InvalidInput, NotFound
from openmvno.lines import service as lines
from openmvno.lines.models import Line, LineState
from openmvno.payments import cards
from openmvno.payments.cards import CardState, SavedCard
from openmvno.renewals import schedule
from openmvno.renewals.models import AutoRenewSetting, Funding

FundingName = Literal["wallet", "card"]


@dataclass(frozen=True, slots=True)
class CardSummary:
    """What a person may see of a saved card (never its number)."""

    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    usable: bool


@dataclass(frozen=True, slots=True)
class AutoRenewView:
    line_id: uuid.UUID
    msisdn: str
    line_state: LineState
    enabled: bool
    funding: Funding
    card: CardSummary | None
    wallet_fallback: bool
    plan_code: str | None
    plan_name_zh: str | None
    plan_name_en: str | None
    amount_minor: int | None
    currency: str | None
    next_renewal_at: datetime | None
    """When the next period starts (the line's expiry); None when nothing will renew."""
    next_attempt_at: datetime | None
    """When the charge is attempted next (None when auto-renew is off)."""
    last_failure: str

    def plan_name(self, language: str) -> str | None:
        return self.plan_name_zh if language == "zh-CN" else self.plan_name_en


# ---------------------------------------------------------------- saved cards (CARDS)


def _summary(card: SavedCard) -> CardSummary:
    return CardSummary(
        id=card.id, brand=card.brand, last4=card.last4, exp_month=card.exp_month,
        exp_year=card.exp_year, usable=card.state == CardState.active,
    )


async def card_summary(
    session: AsyncSession, *, account_id: uuid.UUID, card_id: uuid.UUID
) -> CardSummary | None:
    """The account's saved card ``card_id``, removed ones too (None: not theirs, or no
    such card)."""
    card = await session.scalar(
        select(SavedCard).where(SavedCard.id == card_id, SavedCard.account_id == account_id)
    )
    return _summary(card) if card is not None else None


async def list_cards(session: AsyncSession, *, account_id: uuid.UUID) -> list[CardSummary]:
    """The account's saved cards that can be charged (what the funding choice offers)."""
    return [_summary(c) for c in await cards.list_cards(session, account_id=account_id)]


# ---------------------------------------------------------------- reading


async def _setting(
    session: AsyncSession, line_id: uuid.UUID, *, for_update: bool = False
) -> AutoRenewSetting | None:
    statement = select(AutoRenewSetting).where(AutoRenewSetting.line_id == line_id)
    if for_update:
        statement = statement.with_for_update()
    found: AutoRenewSetting | None = await session.scalar(statement)
    return found


async def _view(
    session: AsyncSession, line: Line, setting: AutoRenewSetting | None
) -> AutoRenewView:
    plan = await session.get(Plan, line.plan_id) if line.plan_id else None
    enabled = bool(setting and setting.enabled and line.auto_renew)
    card = None
    if setting is not None and setting.card_id is not None:
        assert line.account_id is not None
        card = await card_summary(session, account_id=line.account_id, card_id=setting.card_id)
    renews = enabled and line.state != LineState.terminated and plan is not None
    return AutoRenewView(
        line_id=line.id,
        msisdn=line.msisdn,
        line_state=LineState(line.state),
        enabled=enabled,
        funding=Funding(setting.funding) if setting else Funding.wallet,
        card=card,
        wallet_fallback=setting.wallet_fallback if setting else True,
        plan_code=plan.code if plan else None,
        plan_name_zh=plan.name_zh if plan else None,
        plan_name_en=plan.name_en if plan else None,
        amount_minor=plan.price_minor if plan else None,
        currency=plan.currency if plan else None,
        next_renewal_at=line.expires_at if renews else None,
        next_attempt_at=setting.next_attempt_at if (renews and setting) else None,
        last_failure=setting.last_failure if (enabled and setting) else "",
    )


async def auto_renew_view(
    session: AsyncSession, *, account_id: uuid.UUID, line_id: uuid.UUID
) -> AutoRenewView:
    """The line's auto-renew setting, its next renewal date and amount."""
    line = await lines.get_owned(session, account_id=account_id, line_id=line_id)
    return await _view(session, line, await _setting(session, line.id))


# ---------------------------------------------------------------- changing


def reschedule(settings: Settings, setting: AutoRenewSetting, line: Line) -> None:
    """Start the schedule again for the line's current expiry (a new period)."""
    now = clock.now()
    setting.attempts = 0
    setting.last_failure = ""
    setting.waiting_for_wallet = False
    setting.claimed_until = None
    if line.expires_at is None:
        setting.period_key = None
        setting.next_attempt_at = now
        return
    setting.period_key = schedule.period_key(line.expires_at)
    if line.state in (LineState.grace, LineState.suspended):
        setting.next_attempt_at = now  # lapsed already: try at once
        return
    at, number = schedule.first_attempt(settings, line.expires_at, now)
    setting.next_attempt_at = at
    setting.attempts = number


async def set_auto_renew(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    line_id: uuid.UUID,
    enabled: bool,
    funding: FundingName | None = None,
    card_id: uuid.UUID | None = None,
    wallet_fallback: bool | None = None,
    settings: Settings | None = None,
) -> AutoRenewView:
    """Turn auto-renew on or off for one of the account's lines, and choose how it is paid.

    ``funding`` "card" needs ``card_id``, one of the account's saved cards that can still
    be charged; "wallet" forgets the card. Values left ``None`` keep what was set (new
    settings: the wallet, falling back allowed). Turning it on needs a line with a plan
    that is not closed; the schedule starts again from the line's expiry."""
    settings = settings or get_settings()
    line = await lines.get_owned(session, account_id=account_id, line_id=line_id)
    setting = await _setting(session, line.id, for_update=True)
    if setting is None:
        setting = AutoRenewSetting(
            line_id=line.id, account_id=account_id, enabled=False, funding=Funding.wallet,
            card_id=None, wallet_fallback=True, attempts=0, last_failure="",
            waiting_for_wallet=False,
        )
        session.add(setting)
    elif setting.account_id != account_id:  # the line changed hands: start afresh
        setting.account_id = account_id
        setting.funding = Funding.wallet
        setting.card_id = None
        setting.wallet_fallback = True
    if funding is not None:
        setting.funding = Funding(funding)
        if setting.funding is Funding.wallet:
            setting.card_id = None
    if card_id is not None:
        if await card_summary(session, account_id=account_id, card_id=card_id) is None:
            raise NotFound("card_not_found", "There is no such saved card on your account.")
        setting.card_id = card_id
        if funding is None:
            setting.funding = Funding.card
    if setting.funding is Funding.card:
        if setting.card_id is None:
            raise InvalidInput(
                "card_required", "Choose one of your saved cards to pay the renewals with."
            )
        card = await card_summary(session, account_id=account_id, card_id=setting.card_id)
        if card is None or not card.usable:
            raise Conflict(
                "card_unusable",
                "This card can no longer be charged; choose another card or the wallet.",
            )
    if wallet_fallback is not None:
        setting.wallet_fallback = wallet_fallback
    if enabled:
        if line.state == LineState.terminated:
            raise Conflict("line_terminated", "This line has been closed and cannot be renewed.")
        if line.plan_id is None or line.state == LineState.inventory:
            raise Conflict(
                "auto_renew_no_plan",
                "This line has no plan to renew yet; buy a plan first.",
            )
    was_on = setting.enabled and line.auto_renew
    setting.enabled = enabled
    line.auto_renew = enabled
    if enabled and not was_on:
        reschedule(settings, setting, line)
    elif not enabled:
        setting.next_attempt_at = None
        setting.waiting_for_wallet = False
    await session.flush()
    return await _view(session, line, setting)


__all__ = [
    "AutoRenewView",
    "CardSummary",
    "auto_renew_view",
    "card_summary",
    "list_cards",
    "reschedule",
    "set_auto_renew",
]
