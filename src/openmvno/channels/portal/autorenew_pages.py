"""Portal: a line's auto-renew panel (自动续费) — on or off, the wallet or a saved card
(with or without falling back to the wallet), and the next renewal date and amount.

``GET /lines/{id}/auto-renew`` shows it; the form posts to the same address and answers
with a redirect back to it (post/redirect/get; a refusal comes back as a flash)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

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
from openmvno.i18n import N_, translate
from openmvno.renewals import scheduler
from openmvno.renewals import service as renewals
from openmvno.renewals.service import AutoRenewView
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)

DONE = {
    "auto_renew_on": N_("Auto-renew is on for this line."),
    "auto_renew_off": N_("Auto-renew is off for this line."),
}

FAILURES = {
    "card_declined": N_("The last attempt failed: the card was declined."),
    "insufficient_funds": N_("The last attempt failed: the wallet did not have enough money."),
    "no_payment_method": N_("The last attempt failed: the card can no longer be charged."),
    scheduler.CARD_OFF: N_("The last attempt was not made: payment by card is switched off "
                           "for now."),
    scheduler.WALLET_OFF: N_("The last attempt was not made: payment from the wallet is "
                             "switched off for now."),
}
SWITCHED_OFF = {
    # (funding, what is off) -> what the subscriber is told (the operator switched it off)
    ("card", "card+wallet_used"): N_("Payment by card is switched off for now: renewals are "
                                     "paid from the wallet until it is back."),
    ("card", "card"): N_("Payment by card is switched off for now: this line is not renewed "
                         "automatically until it is back. Renew it yourself to keep it."),
    ("card", "wallet"): N_("Payment from the wallet is switched off for now: a declined card "
                           "does not fall back to it."),
    ("wallet", "wallet"): N_("Payment from the wallet is switched off for now: this line is not "
                             "renewed automatically until it is back. Renew it yourself to "
                             "keep it."),
}


def _switched_note(rt: Runtime, view: AutoRenewView) -> str | None:
    """What the subscriber is told when the renewal's payment method is switched off."""
    if not view.enabled:
        return None
    funding = view.funding.value
    off = scheduler.switched_off(rt, funding=funding, wallet_fallback=view.wallet_fallback)
    if not off:
        return None
    if funding == "card" and "card" in off:
        what = "card+wallet_used" if view.wallet_fallback and "wallet" not in off else "card"
    else:
        what = "wallet"
    return SWITCHED_OFF[(funding, what)]
OTHER_FAILURE = N_("The last attempt did not go through.")


def _local(rt: Runtime, value: datetime | None) -> datetime | None:
    """A time as the operator's subscribers read it (``settings.timezone``)."""
    return value.astimezone(ZoneInfo(rt.settings.timezone)) if value is not None else None


def _line_id(raw: str) -> uuid.UUID:
    found = parse_uuid(raw)
    if found is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return found


def _context(request: Request, rt: Runtime, view: AutoRenewView,
             cards: list[renewals.CardSummary]) -> dict[str, Any]:
    lang = request.state.language
    failure = ""
    if view.last_failure:
        failure = translate(lang, FAILURES.get(view.last_failure, OTHER_FAILURE))
    done = request.query_params.get("done", "")
    return {
        "flash": translate(lang, DONE[done]) if done in DONE else None,
        "view": view,
        "cards": cards,
        "plan_name": view.plan_name(lang) or view.plan_code or "",
        "next_renewal_at": _local(rt, view.next_renewal_at),
        "next_attempt_at": _local(rt, view.next_attempt_at),
        "expires_at": _local(rt, view.next_renewal_at),
        "failure": failure,
        "switched_off": translate(lang, note) if (note := _switched_note(rt, view)) else None,
        "chosen": f"card:{view.card.id}" if view.funding.value == "card" and view.card
        else "wallet",
    }


@router.get("/lines/{line_id}/auto-renew")
async def auto_renew_page(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        view = await renewals.auto_renew_view(
            session, account_id=visitor.account.id, line_id=_line_id(line_id)
        )
    except NotFound:
        return not_found(request, visitor)
    cards = await renewals.list_cards(session, account_id=visitor.account.id)
    return page(request, visitor, "autorenew.html", _context(request, rt, view, cards))


def _choice(form: dict[str, str]) -> tuple[bool, str | None, uuid.UUID | None, bool]:
    """(enabled, funding, card id, wallet fallback) from the posted form."""
    enabled = form.get("enabled", "") == "on"
    source = form.get("funding", "wallet")
    funding: str | None
    card_id = None
    if source == "wallet":
        funding = "wallet"
    elif source.startswith("card:") and (card_id := parse_uuid(source[5:])) is not None:
        funding = "card"
    else:
        raise InvalidInput("funding_invalid", "Choose the wallet or one of your saved cards.")
    return enabled, funding, card_id, form.get("wallet_fallback", "") == "on"


@router.post("/lines/{line_id}/auto-renew")
async def auto_renew_submit(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    here = request.url.path
    if visitor.account is None:
        return login_redirect(request, visitor, back=here)
    form = await checked_form(request, visitor, login=True)
    try:
        enabled, funding, card_id, fallback = _choice(form)
        await attempt(
            session,
            renewals.set_auto_renew(
                session, account_id=visitor.account.id, line_id=_line_id(line_id),
                enabled=enabled, funding=funding,  # type: ignore[arg-type]
                card_id=card_id, wallet_fallback=fallback, settings=rt.settings,
            ),
        )
    except NotFound as exc:
        if exc.code == "line_not_found":
            return not_found(request, visitor)
        return redirect_with_error(request, visitor, here, exc)
    except DomainError as exc:
        return redirect_with_error(request, visitor, here, exc)
    done = "auto_renew_on" if enabled else "auto_renew_off"
    return redirect(request, visitor, f"{here}?done={done}")
