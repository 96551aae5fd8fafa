"""Hostile input on every console page and form, as a signed-in admin with a verified
caller: every field of every form gets each attack (NUL, lone surrogate, over-long,
1,000 Chinese characters, control characters...), every page hostile query values. Never
a 5xx; always an HTML page or a redirect; a refused form stores nothing (except a failed
caller check, which is counted in the audit log on purpose)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.staff.models import CallerVerification
from tests.test_hostile_input import (
    ADMIN_EMAIL,
    FORM_ATTACKS,
    PASSWORD,
    PORTAL_QUERY_ATTACKS,
    Tally,
    World,
    _csrf,
    _filled,
    _form_body,
    forms_on,
    snapshot,
    world,
)

_ = world  # the fixture

QUERY_NAMES = ("q", "done", "lang", "event", "action", "actor", "account", "from", "to", "next")
COUNTED = {"/verify/device": {"audit_events"}, "/verify/code": set(),
           "/second-factor": {"audit_events"}}


async def _snapshot(w: World) -> dict[str, str]:
    return await snapshot(w.rt, frozenset({"idle_until"}))  # a console session's idle clock


async def _judge(w: World, tally: Tally, case: str, request: Callable[[], Awaitable[httpx.Response]],
                 counted: set[str] = frozenset()) -> httpx.Response:  # type: ignore[assignment]
    before = await _snapshot(w)
    r = await request()
    tally.cases += 1
    if r.status_code >= 500:
        tally.server_errors += 1
        tally.fail(case, "server error", r)
        return r
    ctype = r.headers.get("content-type", "")
    if not (300 <= r.status_code < 400 or ctype.startswith(("text/html", "text/csv"))):
        tally.fail(case, "not an HTML page or a redirect", r)
    if r.status_code >= 400:
        after = await _snapshot(w)
        changed = sorted(t for t in after if after[t] != before.get(t) and t not in counted)
        if changed:
            tally.fail(case, f"refused but stored: {changed}", r)
    return r


async def _console(w: World) -> str:
    c = w.portal
    page = await c.get("/console/login")
    r = await c.post("/console/login", data={"csrf": _csrf(page.text), "login": ADMIN_EMAIL,
                                             "password": PASSWORD, "next": "/console"})
    assert r.status_code == 303, r.text
    async with unit_of_work(w.rt.sessions) as s:
        admin = (await s.scalars(select(Account.id).where(Account.email == ADMIN_EMAIL))).one()
        subscriber = (await s.scalars(select(Account.id).where(Account.phone == w.phone))).one()
        s.add(CallerVerification(staff_id=admin, account_id=subscriber, method="test",
                                 verified_at=clock.now(),
                                 expires_at=clock.now() + timedelta(hours=3)))
    return str(subscriber)


PAGES = ["/console", "/console/accounts/{a}", "/console/accounts/{a}/orders/{pending}",
         "/console/accounts/{a}/orders/{paid}", "/console/accounts/{a}/messages",
         "/console/security", "/console/admin", "/console/admin/plans",
         "/console/admin/payment-methods", "/console/admin/notices", "/console/admin/staff",
         "/console/admin/peers", "/console/admin/refunds", "/console/admin/audit",
         "/console/admin/export/orders.csv", "/console/admin/export/payments.csv"]


@pytest.mark.parametrize("template", PAGES)
async def test_console_page_and_its_forms_refuse_hostile_input(world: World, template: str) -> None:
    w = world
    a = await _console(w)
    url = template.format(a=a, pending=w.pending_order_id, paid=w.paid_order_id)
    tally = Tally(f"console {template}")
    c = w.portal

    def get(target: str) -> Callable[[], Awaitable[httpx.Response]]:
        async def run() -> httpx.Response:
            return await c.get(target)
        return run

    first = await _judge(w, tally, "baseline", get(url))
    assert first.status_code == 200, (url, first.status_code, first.text[:300])
    for attack, value in PORTAL_QUERY_ATTACKS.items():
        query = "&".join(f"{n}={value}" for n in QUERY_NAMES)
        await _judge(w, tally, f"query={attack}", get(f"{url}?{query}"))
    if not first.headers.get("content-type", "").startswith("text/html"):
        tally.report()
        return
    for form in forms_on(first.text, url):
        action = urlsplit(form.action).path
        if action == "/console/logout":
            continue
        counted = next((v for k, v in COUNTED.items() if action.endswith(k)), set())
        for name in form.fields:
            for attack, value in FORM_ATTACKS.items():
                data = _filled(w, form) | {name: value}

                async def post(f_action: str = form.action, f_origin: str = form.origin,
                               d: dict[str, str] = data, field: str = name) -> httpx.Response:
                    fresh = await c.get(f_origin)
                    if field != "csrf" and 'name="csrf"' in fresh.text:
                        d = d | {"csrf": _csrf(fresh.text)}
                    return await c.post(f_action, content=_form_body(d), headers={
                        "Content-Type": "application/x-www-form-urlencoded"})

                await _judge(w, tally, f"POST {action} {name}={attack}", post, counted)
    tally.report()
