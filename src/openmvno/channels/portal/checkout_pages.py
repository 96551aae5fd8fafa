"""Checkout (``/buy``): buy or renew a plan for a line, an add-on, or a new eSIM line.

Exactly once: the confirm page carries a hidden idempotency key made when it was
rendered, so a double click or a resubmitted form finds the first order (and its open
payment) instead of making a second one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.catalog import service as catalog
from openmvno.catalog.models import PlanKind
from openmvno.channels.portal.order_views import (
    KIND_TITLES,
    method_choices,
    pay_form,
    plan_facts,
    wallet_minor,
)
from openmvno.channels.portal.payment_pages import create_and_pay
from openmvno.channels.portal.web import (
    Viewer,
    Visitor,
    checked_form,
    describe,
    error_page,
    login_redirect,
    not_found,
    page,
    parse_uuid,
    redirect,
)
from openmvno.errors import DomainError, NotFound
from openmvno.i18n import translate
from openmvno.lines import service as lines
from openmvno.lines.models import LineState
from openmvno.lines.service import LineView
from openmvno.orders.models import OrderKind
from openmvno.runtime import Runtime
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)

MAIN_KINDS = (PlanKind.data, PlanKind.voice, PlanKind.mixed)


async def _checkout(
    request: Request, visitor: Visitor, session: AsyncSession, rt: Runtime, *,
    plan_code: str, line_param: str, key: str | None = None, method: str = "",
    error: str | None = None, status_code: int = 200,
) -> Response:
    """Which line is it for (no ``line_param``), else the confirm page for that line or
    ``new``; after a refused POST, the same page with the error and the same key."""
    assert visitor.account is not None
    lang = request.state.language
    try:
        plan = await catalog.get_sellable_plan(session, plan_code)
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        return error_page(request, visitor, exc.status, translate(lang, "Plans"),
                          describe(request, exc))
    if plan.kind == PlanKind.topup:
        return redirect(request, visitor, f"/wallet/topup?amount={Decimal(plan.price_minor) / 100}")
    views = await lines.list_for_account(session, visitor.account.id)
    usable = [v for v in views if v.state != LineState.terminated]
    if plan.kind == PlanKind.addon:
        usable = [v for v in usable if v.state == LineState.active]
    ctx: dict[str, Any] = {"plan": plan, "facts": plan_facts(plan, lang),
                           "terms": plan.terms(lang), "plan_kind": plan.kind.value}
    if not line_param:
        return page(request, visitor, "buy_choose.html",
                    {**ctx, "lines": usable, "new_line": plan.kind in MAIN_KINDS})
    line: LineView | None = None
    if line_param == "new":
        if plan.kind not in MAIN_KINDS:
            return not_found(request, visitor)
        kind = OrderKind.new_line
    else:
        line = next((v for v in usable if str(v.id) == line_param), None)
        if line is None:
            return not_found(request, visitor)
        kind = OrderKind.addon if plan.kind == PlanKind.addon else OrderKind.plan
    balance = await wallet_minor(session, rt, visitor.account)
    methods = method_choices(request, rt, wallet=True, wallet_balance=balance,
                             price_minor=plan.price_minor)
    return page(
        request, visitor, "checkout.html",
        {**ctx, "line": line, "kind": kind.value, "line_param": line_param,
         "title": translate(lang, KIND_TITLES[kind]), "error": error,
         **pay_form(methods, key=key, method=method)},
        status_code=status_code, at="/buy", keep={"plan": plan.code, "line": line_param},
    )


@router.get("/buy")
async def buy_page(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    q = request.query_params
    if not q.get("plan"):
        return redirect(request, visitor, "/plans")
    return await _checkout(request, visitor, session, rt, plan_code=q["plan"],
                           line_param=q.get("line", ""))


@router.post("/buy")
async def buy_submit(request: Request, visitor: Viewer, session: Session, rt: RT) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    form = await checked_form(request, visitor, login=True)
    plan_code, line_param = form.get("plan", ""), form.get("line", "")
    key, method = form.get("key", ""), form.get("method", "")
    body: dict[str, Any] = {"plan_code": plan_code}
    if line_param == "new":
        body["kind"] = OrderKind.new_line.value
    else:
        body["kind"] = form.get("kind", "")
        body["line_id"] = line_param
        if body["kind"] not in (OrderKind.plan.value, OrderKind.addon.value) or not parse_uuid(
            line_param
        ):
            return not_found(request, visitor)
    try:
        return await create_and_pay(request, visitor, session, rt, body=body, key=key,
                                    method=method)
    except NotFound:
        return not_found(request, visitor)
    except DomainError as exc:
        return await _checkout(
            request, visitor, session, rt, plan_code=plan_code, line_param=line_param, key=key,
            method=method, error=describe(request, exc), status_code=exc.status,
        )
