"""Portal pages: My account, plans, binding devices, eSIM activation."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.catalog import service as catalog
from openmvno.catalog.models import PlanKind
from openmvno.channels.portal.order_views import wallet_minor
from openmvno.channels.portal.web import (
    PRIVATE,
    Viewer,
    attempt,
    checked_form,
    describe,
    login_redirect,
    not_found,
    page,
    parse_uuid,
    redirect,
)
from openmvno.errors import DomainError, NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.ledger import service as ledger
from openmvno.lines import esim
from openmvno.lines import service as lines
from openmvno.lines.models import Line, LineState
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)

LINE_KINDS = {"esim": N_("eSIM"), "sim": N_("SIM card"), "datacard": N_("Data card")}
LINE_STATES = {
    "inventory": N_("Not activated yet"),
    "active": N_("Active"),
    "grace": N_("Grace period"),
    "suspended": N_("Suspended"),
    "terminated": N_("Closed"),
}
PLAN_KINDS = {
    "data": N_("Data"),
    "voice": N_("Voice"),
    "mixed": N_("Data + voice"),
    "addon": N_("Add-on"),
    "topup": N_("Top-up"),
}
IPHONE_STEPS = (
    N_("Connect the iPhone to Wi-Fi."),
    N_("Open Settings → Mobile Service (or Cellular) → Add eSIM."),
    N_("Tap “Use QR Code” and scan the code on this page from another screen."),
    N_("No camera? Tap “Enter Details Manually” and paste the activation code."),
    N_("Give the new line a label and choose it for mobile data."),
)
ANDROID_STEPS = (
    N_("Connect the phone to Wi-Fi."),
    N_("Open Settings → Network & internet → SIMs → Add SIM (or “Download a SIM instead”)."),
    N_("Scan the QR code on this page from another screen."),
    N_("No camera? Choose “Need help?” → “Enter it manually” and paste the activation code."),
    N_("Turn the new SIM on and choose it for mobile data."),
)


def _line_id(raw: str) -> uuid.UUID:
    """A line id from the URL; garbage is simply "not found"."""
    line_id = parse_uuid(raw)
    if line_id is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return line_id


def _labels(request: Request) -> dict[str, dict[str, str]]:
    lang = request.state.language
    return {
        "kinds": {k: translate(lang, v) for k, v in LINE_KINDS.items()},
        "states": {k: translate(lang, v) for k, v in LINE_STATES.items()},
        "plan_kinds": {k: translate(lang, v) for k, v in PLAN_KINDS.items()},
    }


async def _account_context(
    request: Request, session: AsyncSession, rt: Runtime, account: Account
) -> dict[str, Any]:
    """What "My account" shows: the lines, each live line's balance, and the wallet."""
    language = request.state.language
    views = await lines.list_for_account(session, account.id)
    balances = await ledger.line_balances(
        session, account_id=account.id, language=language,
        line_ids=[v.id for v in views if v.state != LineState.terminated],
        currency=rt.settings.default_currency,
    )
    minor = await wallet_minor(session, rt, account)
    wallet_text = Formatter(language).money(minor, rt.settings.default_currency)
    return {"lines": views, "balances": balances, "wallet_text": wallet_text,
            **_labels(request)}


@router.get("/account")
async def my_account(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    ctx = await _account_context(request, session, rt, visitor.account)
    return page(request, visitor, "account.html", ctx)


@router.get("/plans")
async def plans(request: Request, visitor: Viewer, session: Session) -> Response:
    wanted = request.query_params.get("kind", "")
    kind = PlanKind(wanted) if wanted in PlanKind.__members__ else None
    found = await catalog.list_plans(session, kind=kind)
    return page(
        request, visitor, "plans.html",
        {"plans": found, "kind": kind.value if kind else "", **_labels(request)},
    )


# ---------------------------------------------------------------- devices


@router.get("/devices/bind")
async def bind_form(request: Request, visitor: Viewer) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    return page(request, visitor, "bind.html", {"values": {}})


@router.post("/devices/bind")
async def bind_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    form = await checked_form(request, visitor, login=True)
    try:
        await attempt(
            session,
            lines.bind_device(
                session, rt, account=visitor.account, serial=form.get("serial", ""),
                secret=form.get("secret", ""),
            ),
        )
    except DomainError as exc:
        return page(
            request, visitor, "bind.html",
            {"values": {"serial": form.get("serial", "")}, "error": describe(request, exc)},
            status_code=exc.status,
        )
    return redirect(request, visitor, "/account?done=bound")


@router.post("/lines/{line_id}/unbind")
async def unbind(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor, back="/account")
    await checked_form(request, visitor, login=True)
    try:
        await attempt(
            session,
            lines.unbind_device(session, account=visitor.account, line_id=_line_id(line_id)),
        )
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        ctx = await _account_context(request, session, rt, visitor.account)
        return page(request, visitor, "account.html", {**ctx, "error": describe(request, exc)},
                    status_code=exc.status, at="/account")
    return redirect(request, visitor, "/account?done=unbound")


# ---------------------------------------------------------------- eSIM


async def _my_esim(
    session: AsyncSession, rt: Runtime, account: Account, line_id: str
) -> tuple[Line, str]:
    """One of the account's eSIM lines and its activation code, else "not found"."""
    line = await lines.get_owned(session, account_id=account.id, line_id=_line_id(line_id))
    return line, esim.activation_code(rt, line)


@router.get("/lines/{line_id}/esim")
async def esim_page(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        line, code = await _my_esim(session, rt, visitor.account, line_id)
    except NotFound:
        return not_found(request, visitor)
    view = await lines.view(session, line)
    lang = request.state.language
    return page(
        request, visitor, "esim.html",
        {
            "line": view,
            "code": code,
            "iphone_steps": [translate(lang, s) for s in IPHONE_STEPS],
            "android_steps": [translate(lang, s) for s in ANDROID_STEPS],
            **_labels(request),
        },
    )


@router.get("/lines/{line_id}/esim/qr.png")
async def esim_qr(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    try:
        _, code = await _my_esim(session, rt, visitor.account, line_id)
    except NotFound:
        return not_found(request, visitor)
    return Response(esim.qr_png(code), media_type="image/png", headers=PRIVATE)
