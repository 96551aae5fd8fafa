"""The sandbox's hosted "save a card" page (``/sandbox/setup/{reference}``).

Like the pay page (:mod:`openmvno.adapters.payments.sandbox_pages`) it stands for the
payment company's own website: its own look and templates, the reference in the URL is
the capability, and its form carries a CSRF token tied to the setup (a POST without it
is a 403 and saves nothing). Only brand, last four digits, expiry and a new token are
kept of the card. After the form the payer goes back to the merchant's return URL with
``?setup=<setup id>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from openmvno.adapters.payments.sandbox import CardError
from openmvno.adapters.payments.sandbox_cards import SAVE_CARDS, save_card
from openmvno.adapters.payments.sandbox_models import SandboxSetup
from openmvno.adapters.payments.sandbox_pages import FIELD_LIMITS, _render, _too_long
from openmvno.i18n import translate
from openmvno.web.deps import RT, Session

router = APIRouter(prefix="/sandbox/setup", include_in_schema=False)

REFERENCE = re.compile(r"sbs_[0-9a-f]{24}")
Csrf = Annotated[str, Form(alias="csrf")]


def csrf_token(rt: RT, reference: str) -> str:
    mac = hmac.new(rt.secret_key.encode(), f"sandbox-setup-csrf:{reference}".encode(),
                   hashlib.sha256)
    return mac.hexdigest()


def _csrf_ok(rt: RT, reference: str, sent: str) -> bool:
    if not sent or len(sent) > 128 or not sent.isascii():
        return False
    return hmac.compare_digest(sent.encode(), csrf_token(rt, reference).encode())


def return_to(row: SandboxSetup) -> str:
    parts = urlsplit(row.return_url)
    query = parts.query + ("&" if parts.query else "") + urlencode({"setup": row.setup_id})
    return urlunsplit(parts._replace(query=query))


async def _row(session: Session, reference: str, *, lock: bool = False) -> SandboxSetup | None:
    if not REFERENCE.fullmatch(reference):
        return None
    stmt = select(SandboxSetup).where(SandboxSetup.reference == reference)
    if lock:
        stmt = stmt.with_for_update()
    row: SandboxSetup | None = await session.scalar(stmt)
    return row


def _context(row: SandboxSetup, rt: RT) -> dict[str, Any]:
    return {
        "s": row,
        "p": None,
        "merchant": rt.settings.operator_name,
        "return_url": return_to(row),
        "action": f"/sandbox/setup/{row.reference}",
        "csrf": csrf_token(rt, row.reference),
        "test_cards": SAVE_CARDS.values(),
    }


def _not_found(request: Request) -> HTMLResponse:
    return _render(request, "sandbox_status.html", {"p": None, "missing": True}, 404)


@router.get("/{setup_ref}", response_class=HTMLResponse)
async def setup_page(
    request: Request, setup_ref: str, session: Session, rt: RT
) -> HTMLResponse:
    """The form, or what became of the setup."""
    row = await _row(session, setup_ref)
    if row is None:
        return _not_found(request)
    status = 200 if row.status == "requires_action" else 409
    return _render(request, "sandbox_setup.html", {**_context(row, rt), "errors": {}}, status)


@router.post("/{setup_ref}/card", response_model=None)
async def save(
    request: Request,
    setup_ref: str,
    session: Session,
    rt: RT,
    card_number: Annotated[str, Form()] = "",
    card_expiry: Annotated[str, Form()] = "",
    card_cvc: Annotated[str, Form()] = "",
    csrf: Csrf = "",
) -> Response:
    """Take a test card and save it (or refuse it, as its test number says)."""
    row = await _row(session, setup_ref, lock=True)
    if row is None:
        return _not_found(request)
    if not _csrf_ok(rt, row.reference, csrf):
        return _render(request, "sandbox_setup.html",
                       {**_context(row, rt), "errors": {}, "forbidden": True}, 403)
    if row.status != "requires_action":
        return _render(request, "sandbox_setup.html", {**_context(row, rt), "errors": {}}, 409)
    try:
        for name, value in (("card_number", card_number), ("card_expiry", card_expiry),
                            ("card_cvc", card_cvc)):
            if len(value) > FIELD_LIMITS[name]:
                raise _too_long(name)
        save_card(session, row, card_number, card_expiry, card_cvc)
    except CardError as err:
        language: str = request.state.language
        errors = {err.field: translate(language, err.message, **err.params)}
        ctx = {**_context(row, rt), "errors": errors, "expiry": card_expiry[:10]}
        return _render(request, "sandbox_setup.html", ctx, 422)
    return RedirectResponse(return_to(row), status_code=303)
