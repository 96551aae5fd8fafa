"""The sandbox's hosted payment pages (``/sandbox/pay/{reference}``).

They stand for the payment company's own website: their own look ("OpenMVNO
Sandbox Pay"), their own templates. Mounted only when ``payment_provider`` is
``sandbox``. The reference in the URL is the capability (as with a real hosted
checkout page); no OpenMVNO login is involved.

Every form carries a CSRF token tied to the payment (HMAC-SHA256 of the reference with
the deployment secret, :func:`csrf_token`): another site that knows a payment link can
still not make the payer's browser pay it. A POST without the right token is a 403 and
changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from openmvno import formatting
from openmvno.adapters.payments.sandbox import (
    SANDBOX_BANK,
    CardError,
    check_card,
    settle,
)
from openmvno.adapters.payments.sandbox_models import SandboxPayment
from openmvno.i18n import N_, translate
from openmvno.web.deps import RT, Session

TEMPLATES = Path(__file__).parent / "templates"

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(prefix="/sandbox/pay", include_in_schema=False)

REFERENCE = re.compile(r"sbx_[0-9a-f]{24}")
"""What :func:`~openmvno.adapters.payments.sandbox.reference_for` makes."""
CSRF_FIELD = "csrf"
Csrf = Annotated[str, Form(alias=CSRF_FIELD)]
# Form fields carry no length limits of their own: anything too long or odd is answered
# on the page (the card form with its error, or the 403 page), never with a JSON problem.
FIELD_LIMITS = {"card_number": 40, "card_expiry": 10, "card_cvc": 6}


def csrf_token(rt: RT, reference: str) -> str:
    """The CSRF token of every form on one payment's pages."""
    mac = hmac.new(rt.secret_key.encode(), f"sandbox-pay-csrf:{reference}".encode(),
                   hashlib.sha256)
    return mac.hexdigest()


def _csrf_ok(rt: RT, row: SandboxPayment, sent: str) -> bool:
    if not sent or len(sent) > 128 or not sent.isascii():
        return False
    return hmac.compare_digest(sent.encode(), csrf_token(rt, row.reference).encode())


def _forbidden(request: Request, row: SandboxPayment, rt: RT) -> HTMLResponse:
    """A form without the right token: nothing happens, the payer is told to reload."""
    return _render(request, "sandbox_status.html", {**_base_context(row, rt), "forbidden": True},
                   403)


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    language: str = request.state.language

    def t(message: str, **params: Any) -> str:
        return translate(language, message, **params)

    ctx: dict[str, Any] = {
        "lang": language,
        "t": t,
        "fmt": formatting.Formatter(language),
        "path": request.url.path,
    }
    ctx.update(context)
    html = env.get_template(name).render(ctx)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def return_to(row: SandboxPayment) -> str:
    """The merchant's return URL with ``attempt=<attempt id>`` appended."""
    parts = urlsplit(row.return_url)
    query = parts.query + ("&" if parts.query else "") + urlencode({"attempt": row.attempt_id})
    return urlunsplit(parts._replace(query=query))


async def _row(
    session: Session, rt: RT, reference: str, *, lock: bool = False
) -> SandboxPayment | None:
    if not REFERENCE.fullmatch(reference):
        return None  # not one of ours (a NUL, an over-long path...): the 404 page
    stmt = select(SandboxPayment).where(SandboxPayment.reference == reference)
    if lock:
        stmt = stmt.with_for_update()
    row: SandboxPayment | None = await session.scalar(stmt)
    return row


def _base_context(row: SandboxPayment, rt: RT) -> dict[str, Any]:
    return {
        "p": row,
        "merchant": rt.settings.operator_name,
        "return_url": return_to(row),
        "action": f"/sandbox/pay/{row.reference}",
        "csrf": csrf_token(rt, row.reference),
    }


def _not_found(request: Request) -> HTMLResponse:
    return _render(request, "sandbox_status.html", {"p": None, "missing": True}, 404)


def _closed(request: Request, row: SandboxPayment, rt: RT) -> HTMLResponse:
    """The payment has an outcome (or is processing): show it, nothing to press."""
    return _render(request, "sandbox_status.html", _base_context(row, rt), 409)


def _too_long(name: str) -> CardError:
    if name == "card_number":
        return CardError(name, N_("The card number is not valid."))
    if name == "card_expiry":
        return CardError(name, N_("Give the expiry date as MM/YY."))
    return CardError(name, N_("The security code (CVC) is {n} digits."), n=3)


def _back(row: SandboxPayment) -> RedirectResponse:
    return RedirectResponse(return_to(row), status_code=303)


def _qr_svg(data: str) -> str:
    qr = segno.make(data, error="m")
    svg: str = qr.svg_inline(scale=5, border=2, dark="#1a1a2e")
    return svg


@router.get("/{reference}", response_class=HTMLResponse)
async def pay_page(request: Request, reference: str, session: Session, rt: RT) -> HTMLResponse:
    """The hosted page: a card form, a QR to scan, or bank transfer details."""
    row = await _row(session, rt, reference)
    if row is None:
        return _not_found(request)
    ctx = _base_context(row, rt)
    if row.status != "requires_action":
        return _render(request, "sandbox_status.html", ctx)
    if row.method == "card":
        if row.stage == "3ds":
            return _render(request, "sandbox_3ds.html", ctx)
        return _render(request, "sandbox_card.html", {**ctx, "errors": {}})
    if row.method in ("alipay", "wechat_pay"):
        scan_url = f"{rt.settings.public_url.rstrip('/')}/sandbox/pay/{row.reference}/scan"
        return _render(
            request,
            "sandbox_qr.html",
            {**ctx, "qr_svg": _qr_svg(scan_url), "scan_url": scan_url, "phone": False},
        )
    return _render(
        request,
        "sandbox_bank.html",
        {**ctx, "bank": SANDBOX_BANK, "beneficiary": rt.settings.operator_name},
    )


@router.get("/{reference}/scan", response_class=HTMLResponse)
async def scan_page(request: Request, reference: str, session: Session, rt: RT) -> HTMLResponse:
    """What the payer's phone shows after scanning the QR: confirm or decline."""
    row = await _row(session, rt, reference)
    if row is None:
        return _not_found(request)
    ctx = _base_context(row, rt)
    if row.status != "requires_action" or row.method not in ("alipay", "wechat_pay"):
        return _render(request, "sandbox_status.html", ctx)
    return _render(request, "sandbox_qr.html", {**ctx, "phone": True})


@router.post("/{reference}/card", response_model=None)
async def pay_card(
    request: Request,
    reference: str,
    session: Session,
    rt: RT,
    card_number: Annotated[str, Form()] = "",
    card_expiry: Annotated[str, Form()] = "",
    card_cvc: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    """Take a test card. Only brand and last four digits are kept."""
    row = await _row(session, rt, reference, lock=True)
    if row is None:
        return _not_found(request)
    if not _csrf_ok(rt, row, csrf):
        return _forbidden(request, row, rt)
    if row.method != "card" or row.status != "requires_action" or row.stage != "pay":
        return _closed(request, row, rt)
    try:
        for name, value in (("card_number", card_number), ("card_expiry", card_expiry),
                            ("card_cvc", card_cvc)):
            if len(value) > FIELD_LIMITS[name]:
                raise _too_long(name)
        checked = check_card(card_number, card_expiry, card_cvc)
    except CardError as err:
        language: str = request.state.language
        errors = {err.field: translate(language, err.message, **err.params)}
        ctx = {**_base_context(row, rt), "errors": errors, "expiry": card_expiry[:10]}
        return _render(request, "sandbox_card.html", ctx, 422)
    row.card_brand = checked.brand
    row.card_last4 = checked.last4
    outcome = checked.card.outcome
    if outcome == "3ds":
        row.stage = "3ds"
        return RedirectResponse(f"/sandbox/pay/{row.reference}", status_code=303)
    if outcome == "never":
        settle(row, "processing")
    else:
        settle(row, outcome, checked.card.failure_code)
    return _back(row)


@router.post("/{reference}/3ds", response_model=None)
async def answer_3ds(
    request: Request,
    reference: str,
    session: Session,
    rt: RT,
    outcome: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    """The bank's 3-D Secure challenge: approve or fail."""
    row = await _row(session, rt, reference, lock=True)
    if row is None:
        return _not_found(request)
    if not _csrf_ok(rt, row, csrf):
        return _forbidden(request, row, rt)
    if row.status != "requires_action" or row.stage != "3ds" or outcome not in ("approve", "fail"):
        return _closed(request, row, rt)
    if outcome == "approve":
        settle(row, "succeeded")
    else:
        settle(row, "failed", "authentication_failed")
    return _back(row)


@router.post("/{reference}/confirm", response_model=None)
async def confirm_scan(
    request: Request, reference: str, session: Session, rt: RT, csrf: Csrf = ""
) -> Response:
    """The wallet app confirms the QR payment."""
    return await _wallet(request, reference, session, rt, csrf, approve=True)


@router.post("/{reference}/decline", response_model=None)
async def decline_scan(
    request: Request, reference: str, session: Session, rt: RT, csrf: Csrf = ""
) -> Response:
    """The wallet app declines the QR payment."""
    return await _wallet(request, reference, session, rt, csrf, approve=False)


async def _wallet(
    request: Request, reference: str, session: Session, rt: RT, csrf: str, *, approve: bool
) -> Response:
    row = await _row(session, rt, reference, lock=True)
    if row is None:
        return _not_found(request)
    if not _csrf_ok(rt, row, csrf):
        return _forbidden(request, row, rt)
    if row.method not in ("alipay", "wechat_pay") or row.status != "requires_action":
        return _closed(request, row, rt)
    if approve:
        settle(row, "succeeded")
    else:
        settle(row, "failed", "declined")
    return _back(row)


@router.post("/{reference}/transfer", response_model=None)
async def simulate_transfer(
    request: Request, reference: str, session: Session, rt: RT, csrf: Csrf = ""
) -> Response:
    """Sandbox only: pretend the bank transfer has arrived."""
    row = await _row(session, rt, reference, lock=True)
    if row is None:
        return _not_found(request)
    if not _csrf_ok(rt, row, csrf):
        return _forbidden(request, row, rt)
    if row.method != "bank_transfer" or row.status != "requires_action":
        return _closed(request, row, rt)
    settle(row, "succeeded")
    return _back(row)
