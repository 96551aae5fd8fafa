"""Top-ups: my own wallet (``/wallet/topup``, logged in) and a guest top-up of any line in
service (``/topup``: number, confirm the masked owner, amount, pay; no login needed).
Like checkout, each rendered amount form carries its own idempotency key.

A guest's order is reached only through its link, ``/topup/orders/{token}`` (result,
pay again, cancel, receipt): the token is made with the confirm form, so the same form
sent twice finds its order again, and only its hash is stored. The confirm form also
carries the look-up's confirmation: only the owner shown there can be credited."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from openmvno.channels.portal.order_views import guest_path, method_choices, pay_form
from openmvno.channels.portal.payment_pages import create_and_pay, pay_or_resume, result_page
from openmvno.channels.portal.web import (
    PRIVATE,
    Viewer,
    Visitor,
    attempt,
    checked_form,
    describe,
    login_redirect,
    not_found,
    page,
    read_sealed_cookie,
    redirect,
    set_sealed_cookie,
)
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.orders import service as orders
from openmvno.orders.models import OrderKind
from openmvno.receipts import pdf
from openmvno.receipts import service as receipts
from openmvno.receipts.models import Receipt
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)

_AMOUNT = re.compile(r"^(\d{1,9})(?:\.(\d+))?$")
_DECIMAL_COMMA = re.compile(r"^\d{1,9},\d{1,2}$")
"""``50,5`` or ``50,50``: a comma before one or two last digits is the decimal point."""
_GROUPED = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
"""``1,000`` or ``1,000.50``: commas between groups of three digits separate thousands."""


def parse_amount(text: str, rt: Runtime) -> int:
    """Yuan as typed ("50", "50.5", "¥50.50", "50,50", "1,000") to integer minor units
    (fen), exactly. A comma before one or two last digits is a decimal comma ("50,00" is
    ¥50.00, never ¥5,000); commas between groups of three digits separate thousands; any
    other comma is refused, as are more than two decimals and amounts outside the
    operator's top-up range."""
    cleaned = text.strip().lstrip("¥￥").strip()
    if "," in cleaned:
        if _DECIMAL_COMMA.match(cleaned):
            cleaned = cleaned.replace(",", ".")
        elif _GROUPED.match(cleaned):
            cleaned = cleaned.replace(",", "")
        else:
            raise InvalidInput(
                "amount_separators",
                "Write the decimals after a point or a comma (50.5 or 50,5) and group "
                "thousands only by three (1,000).",
            )
    match = _AMOUNT.match(cleaned)
    if not match:
        raise InvalidInput(
            "amount_not_a_number", "Enter the amount in yuan, for example 50 or 50.5."
        )
    if match.group(2) is not None and len(match.group(2)) > 2:
        raise InvalidInput("amount_too_precise", "Amounts can have at most two decimal places.")
    try:
        minor = int(Decimal(cleaned) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern already checked it
        raise InvalidInput(
            "amount_not_a_number", "Enter the amount in yuan, for example 50 or 50.5."
        ) from None
    low, high = rt.settings.topup_min_minor, rt.settings.topup_max_minor
    if not low <= minor <= high:
        fmt = Formatter(rt.settings.default_language)
        cur = rt.settings.default_currency
        raise InvalidInput(
            "topup_amount_out_of_range", "A top-up must be between {min} and {max}.",
            min=fmt.money(low, cur), max=fmt.money(high, cur),
        )
    return minor


def _amount_form(
    request: Request, visitor: Visitor, rt: Runtime, template: str, *,
    context: dict[str, Any] | None = None, amount: str = "", key: str | None = None,
    method: str = "", error: str | None = None, status_code: int = 200,
    at: str | None = None, keep: dict[str, str] | None = None,
) -> Response:
    """An amount form (wallet or guest top-up): the amount, the allowed range and the
    payment methods (never the wallet: a top-up cannot be paid from it)."""
    lang = request.state.language
    fmt = Formatter(lang)
    cur = rt.settings.default_currency
    allowed = translate(
        lang, "From {min} to {max}.",
        min=fmt.money(rt.settings.topup_min_minor, cur),
        max=fmt.money(rt.settings.topup_max_minor, cur),
    )
    methods = method_choices(request, rt, wallet=False)
    return page(
        request, visitor, template,
        {**(context or {}), "amount": amount, "range": allowed, "error": error,
         **pay_form(methods, key=key, method=method)},
        status_code=status_code, at=at, keep=keep,
    )


# ---------------------------------------------------------------- my wallet


@router.get("/wallet/topup")
async def wallet_topup_page(request: Request, visitor: Viewer, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    return _amount_form(request, visitor, rt, "wallet_topup.html",
                        amount=request.query_params.get("amount", ""))


@router.post("/wallet/topup")
async def wallet_topup_submit(
    request: Request, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    form = await checked_form(request, visitor, login=True)
    amount, key, method = form.get("amount", ""), form.get("key", ""), form.get("method", "")
    try:
        minor = parse_amount(amount, rt)
        body = {"kind": OrderKind.topup.value, "amount_minor": minor}
        return await create_and_pay(request, visitor, session, rt, body=body, key=key,
                                    method=method)
    except DomainError as exc:
        return _amount_form(request, visitor, rt, "wallet_topup.html", amount=amount, key=key,
                            method=method, error=describe(request, exc), status_code=exc.status)


# ---------------------------------------------------------------- guest top-up


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _number_form(
    request: Request, visitor: Visitor, msisdn: str, exc: DomainError | None = None
) -> Response:
    """Step one: which number (after a POST, with why it was refused)."""
    return page(
        request, visitor, "topup_number.html",
        {"msisdn": msisdn, **({"error": describe(request, exc)} if exc else {})},
        status_code=exc.status if exc else 200, at="/topup", keep={"msisdn": msisdn},
    )


def _confirm_form(
    request: Request, visitor: Visitor, rt: Runtime, msisdn: str, found: dict[str, str],
    link: str | None = None, **kwargs: Any,
) -> Response:
    """Step two: the masked number and owner to check, the amount and the method; hidden,
    the look-up's confirmation and the link token the order will be reached by."""
    return _amount_form(
        request, visitor, rt, "topup_guest.html",
        context={"msisdn": msisdn, "found": found, "link": link or orders.new_guest_link()},
        at=CONFIRM_PATH, **kwargs,
    )


CONFIRM_PATH = "/topup/confirm"
LOOKUP_COOKIE = "omv_topup"
LOOKUP_SECONDS = 30 * 60
"""How long the confirm page can be reloaded (or its language switched) after a look-up."""


@router.get("/topup")
async def guest_topup_page(request: Request, visitor: Viewer) -> Response:
    return _number_form(request, visitor, request.query_params.get("msisdn", ""))


@router.post("/topup")
async def guest_topup_lookup(
    request: Request, visitor: Viewer, session: Session, rt: RT
) -> Response:
    form = await checked_form(request, visitor, login=False)
    msisdn = form.get("msisdn", "")
    try:
        found = await orders.guest_lookup(session, rt, msisdn, client=_client(request))
    except DomainError as exc:
        return _number_form(request, visitor, msisdn, exc)
    # Post/redirect/get: the confirm step has its own address, reloadable without a new
    # look-up (what was found travels in a short signed cookie, for /topup pages only).
    response = redirect(request, visitor, CONFIRM_PATH)
    set_sealed_cookie(response, request, LOOKUP_COOKIE, "topup", {"typed": msisdn, **found},
                      max_age=LOOKUP_SECONDS, path="/topup")
    return response


@router.get(CONFIRM_PATH)
async def guest_topup_confirm(request: Request, visitor: Viewer, rt: RT) -> Response:
    """Step two after the look-up (else back to step one)."""
    state = read_sealed_cookie(request, LOOKUP_COOKIE, "topup", max_age=LOOKUP_SECONDS)
    if state is None:
        return redirect(request, visitor, "/topup")
    found = {k: str(state.get(k, "")) for k in ("msisdn", "owner", "confirmation")}
    return _confirm_form(request, visitor, rt, str(state.get("typed", "")), found)


@router.post("/topup/pay")
async def guest_topup_pay(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    form = await checked_form(request, visitor, login=False)
    msisdn, amount = form.get("msisdn", ""), form.get("amount", "")
    key, method = form.get("key", ""), form.get("method", "")
    link, confirmed = form.get("link", ""), form.get("confirmation", "")
    try:
        found = await orders.guest_lookup(session, rt, msisdn, client=_client(request))
    except DomainError as exc:
        return _number_form(request, visitor, msisdn, exc)
    try:
        minor = parse_amount(amount, rt)
        body = {"kind": OrderKind.guest_topup.value, "msisdn": msisdn, "amount_minor": minor,
                "confirmation": confirmed}
        return await create_and_pay(request, visitor, session, rt, body=body, key=key,
                                    method=method, link=link)
    except DomainError as exc:
        # Shown again with the number's owner now (and its confirmation), to check anew.
        fresh = exc.code == "guest_link_invalid"
        return _confirm_form(request, visitor, rt, msisdn, found,
                             link=None if fresh else (link or None),
                             amount=amount, key=key, method=method,
                             error=describe(request, exc), status_code=exc.status)


# ---------------------------------------------------------------- a guest's order, by its link


@router.get("/topup/orders/{token}")
async def guest_order(
    request: Request, token: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    """A guest's order (the payment provider sends the payer back here)."""
    return await result_page(request, visitor, session, rt, None, link=token)


@router.post("/topup/orders/{token}/pay")
async def guest_order_pay(
    request: Request, token: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    """Pay a guest's order again (another method after a decline)."""
    form = await checked_form(request, visitor, login=False)
    try:
        order = await orders.get_by_link(session, token)
    except NotFound:
        return not_found(request, visitor)
    return await pay_or_resume(request, visitor, session, rt, order, form.get("method", ""),
                               link=token)


@router.post("/topup/orders/{token}/cancel")
async def guest_order_cancel(
    request: Request, token: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    """Cancel a guest's order until it is paid (then the page says why not)."""
    await checked_form(request, visitor, login=False)
    try:
        order = await orders.get_by_link(session, token)
    except NotFound:
        return not_found(request, visitor)
    try:
        await attempt(session, orders.cancel(session, order))
    except DomainError as exc:
        return await result_page(request, visitor, session, rt, None, link=token,
                                 error=describe(request, exc), status_code=exc.status)
    return redirect(request, visitor, guest_path(token) + "?done=order_cancelled")


async def _guest_receipt(session: Session, token: str) -> Receipt:
    return await receipts.of_order(session, await orders.get_by_link(session, token))


@router.get("/topup/orders/{token}/receipt.pdf")
async def guest_receipt_pdf(
    request: Request, token: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    try:
        receipt = await _guest_receipt(session, token)
    except NotFound:
        return not_found(request, visitor)
    data = await pdf.render_pdf_off_loop(receipt, language=request.state.language,
                                         settings=rt.settings)
    headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{receipt.number}.pdf"'}
    return Response(data, media_type="application/pdf", headers=headers)


@router.get("/topup/orders/{token}/receipt")
async def guest_receipt(
    request: Request, token: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    try:
        receipt = await _guest_receipt(session, token)
    except NotFound:
        return not_found(request, visitor)
    html = receipts.render_html(
        receipt, language=request.state.language, operator=rt.settings.operator_name,
        back=[(guest_path(token), N_("Back to the order"))],
        pdf_url=guest_path(token) + "/receipt.pdf",
    )
    return HTMLResponse(html, headers=PRIVATE)
