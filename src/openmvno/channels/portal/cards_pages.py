"""Portal: "Payment cards" (``/account/cards``) — the saved cards (brand, last four,
expiry; the default first), saving another through the provider's hosted page, choosing
the default, removing one; and the wallet's auto top-up (threshold, amount, card, at most
N times a month). Forms post and redirect back (post/redirect/get; a refusal comes back
as a flash)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from openmvno.channels.portal.web import (
    Viewer,
    attempt,
    checked_form,
    login_redirect,
    not_found,
    page,
    parse_uuid,
    redirect,
    redirect_with_error,
)
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.fields import MINOR_AMOUNT_MAX
from openmvno.i18n import N_, translate
from openmvno.payments import auto_topup, cards
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)
HERE = "/account/cards"

DONE = {
    "card_saved": N_("Your card is saved."),
    "card_removed": N_("The card is removed; it will not be charged again."),
    "card_default": N_("This card is now your default card."),
    "topup_on": N_("Auto top-up is on."),
    "topup_off": N_("Auto top-up is off."),
    "setup_open": N_("The card is not saved yet: finish on the card page, then come back."),
}

_YUAN = re.compile(r"^\d{1,10}(?:\.\d{1,2})?$")


TOPUP_CARDS_OFF = N_("Payment by card is switched off for now: your wallet is not topped up "
                     "automatically until it is back.")


def _minor(text: str, *, field: str) -> int:
    """Yuan as typed ("20", "20.5", "¥20,50") to minor units; refuses anything else."""
    cleaned = text.strip().lstrip("¥￥").strip()
    if re.fullmatch(r"\d{1,10},\d{1,2}", cleaned):
        cleaned = cleaned.replace(",", ".")
    refused = InvalidInput(f"{field}_invalid", N_("Give an amount in yuan, such as 20 or 20.50."))
    if not _YUAN.match(cleaned):
        raise refused
    try:
        value = int(Decimal(cleaned) * 100)
    except InvalidOperation as exc:  # pragma: no cover - the pattern keeps these out
        raise refused from exc
    if value > MINOR_AMOUNT_MAX:
        raise refused
    return value


def _card_id(raw: str) -> uuid.UUID:
    found = parse_uuid(raw)
    if found is None:
        raise cards.CardNotFound()
    return found


@router.get("/account/cards")
async def cards_page(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    account_id = visitor.account.id
    await cards.finish_open_setups(rt, account_id=account_id, reader=session)
    saved = await cards.list_cards(session, account_id=account_id)
    topup = await auto_topup.view(
        session, account_id=account_id, currency=rt.settings.default_currency,
        default_max=rt.settings.auto_topup_max_per_month,
    )
    lang = request.state.language
    done = request.query_params.get("done", "")
    ctx: dict[str, Any] = {
        "flash": translate(lang, DONE[done]) if done in DONE else None,
        "cards": saved,
        "soon": {c.id for c in saved if cards.expires_soon(c)},
        "topup": topup,
        "topup_failure": (
            translate(lang, N_("The last auto top-up was declined ({code}); it will be tried "
                               "again later."), code=topup.last_failure_code)
            if topup.last_failure_code else ""
        ),
        # Payment methods switched off on the console (read for this request by the
        # portal's visitor dependency): an enabled top-up waits until cards are back.
        "topup_switched_off": translate(lang, TOPUP_CARDS_OFF)
        if topup.enabled and auto_topup.waiting_for_cards(rt) else "",
        "yuan": lambda minor: f"{minor // 100}.{minor % 100:02d}",
    }
    return page(request, visitor, "cards.html", ctx)


@router.post("/account/cards/setup")
async def start_setup(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=HERE)
    await checked_form(request, visitor, login=True)
    account_id = visitor.account.id
    await session.commit()  # no request transaction held while the provider is asked
    try:
        setup = await cards.start_setup(rt, account_id=account_id)
    except DomainError as exc:
        return redirect_with_error(request, visitor, HERE, exc)
    url = setup.next_action.get("url") if setup.next_action.get("type") == "redirect" else None
    if not isinstance(url, str):
        return redirect_with_error(request, visitor, HERE, InvalidInput(
            "card_setup_needs_app", N_("Save cards with this payment service in the app."),
        ))
    response = redirect(request, visitor, url)
    assert isinstance(response, RedirectResponse)
    return response


@router.get("/account/cards/setup/{setup_id}")
async def setup_done(
    request: Request, setup_id: str, visitor: Viewer, rt: RT
) -> Response:
    """Where the provider's page sends the payer back: record how it went."""
    if visitor.account is None:
        return login_redirect(request, visitor)
    found = parse_uuid(setup_id)
    if found is None:
        return not_found(request, visitor)
    try:
        setup = await cards.finish_setup(rt, setup_id=found, account_id=visitor.account.id)
    except NotFound:
        return not_found(request, visitor)
    if setup.state == cards.SetupState.succeeded:
        return redirect(request, visitor, f"{HERE}?done=card_saved")
    if setup.state == cards.SetupState.failed:
        return redirect_with_error(request, visitor, HERE, InvalidInput(
            "card_not_saved", cards.setup_failure_reason(setup.failure_code)))
    return redirect(request, visitor, f"{HERE}?done=setup_open")


@router.post("/account/cards/{card_id}/default")
async def make_default(
    request: Request, card_id: str, visitor: Viewer, session: Session
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=HERE)
    await checked_form(request, visitor, login=True)
    try:
        await attempt(session, cards.set_default(
            session, account_id=visitor.account.id, card_id=_card_id(card_id)))
    except NotFound:
        return not_found(request, visitor)
    return redirect(request, visitor, f"{HERE}?done=card_default")


@router.post("/account/cards/{card_id}/remove")
async def remove(request: Request, card_id: str, visitor: Viewer, session: Session) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=HERE)
    await checked_form(request, visitor, login=True)
    try:
        await attempt(session, cards.remove_card(
            session, account_id=visitor.account.id, card_id=_card_id(card_id)))
    except NotFound:
        return not_found(request, visitor)
    return redirect(request, visitor, f"{HERE}?done=card_removed")


@router.post("/account/auto-topup")
async def set_topup(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back=HERE)
    form = await checked_form(request, visitor, login=True)
    enabled = form.get("enabled", "") == "on"
    try:
        threshold = _minor(form.get("threshold", ""), field="threshold")
        amount = _minor(form.get("amount", ""), field="amount")
        n_raw = form.get("max_per_month", "").strip()
        if not n_raw.isdigit() or len(n_raw) > 2:
            raise InvalidInput("max_per_month_invalid", N_("Top up at most {n} times a month."),
                               n=auto_topup.MAX_PER_MONTH_LIMIT)
        source = form.get("card", "default")
        card_id = None if source == "default" else _card_id(source)
        await attempt(session, auto_topup.set_auto_topup(
            session, account_id=visitor.account.id, currency=rt.settings.default_currency,
            enabled=enabled, threshold_minor=threshold, amount_minor=amount, card_id=card_id,
            max_per_month=int(n_raw), default_max=rt.settings.auto_topup_max_per_month,
        ))
    except DomainError as exc:
        return redirect_with_error(request, visitor, HERE, exc)
    return redirect(request, visitor, f"{HERE}?done={'topup_on' if enabled else 'topup_off'}")
