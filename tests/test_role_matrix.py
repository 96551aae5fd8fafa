"""Who may call what: every API and portal route × anonymous, subscriber A, subscriber B,
agent and admin, against a world where A and B each own a line, orders and a receipt.

Path parameters are filled with A's objects, so "B is denied" means B cannot reach
A's things. A route the matrix does not know fails the test: a new route must be
classified here before it ships."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from openmvno.accounts.models import Role
from openmvno.app import create_app
from openmvno.db import unit_of_work
from openmvno.lines.models import Line, LineKind
from openmvno.runtime import Runtime
from tests.catalog.helpers import staff_headers
from tests.console.helpers import console_session, console_world
from tests.orders.helpers import fund_wallet, give_line, order, pay, seed_plans, subscriber

ROLES = ("anonymous", "subscriber_a", "subscriber_b", "agent", "admin")
EVERYONE = frozenset(ROLES)
SIGNED_IN = EVERYONE - {"anonymous"}
STAFF = frozenset({"agent", "admin"})

# Who may pass each route's authorisation ("allowed" = neither 401/403/404 nor a redirect to
# the login page; a 4xx about the (empty) request body still counts as allowed). Path
# parameters name subscriber A's objects.
OWNER = frozenset({"subscriber_a"})
OWNER_OR_STAFF = OWNER | STAFF
LINK_HOLDER: frozenset[str] = frozenset()  # a guest order: only its link token opens it
MATRIX: dict[str, frozenset[str]] = {
    # health and docs
    "GET /healthz": EVERYONE,
    "GET /readyz": EVERYONE,
    "GET /openapi.json": EVERYONE,
    "GET /docs": EVERYONE,
    "GET /docs/start.js": EVERYONE,
    # API: auth (anonymous flows) and me
    "POST /api/v1/auth/register": EVERYONE,
    "POST /api/v1/auth/verify": EVERYONE,
    "POST /api/v1/auth/resend": EVERYONE,
    "POST /api/v1/auth/token": EVERYONE,
    "POST /api/v1/auth/refresh": EVERYONE,
    "POST /api/v1/auth/logout": EVERYONE,
    "POST /api/v1/auth/password-reset": EVERYONE,
    "POST /api/v1/auth/password-reset/confirm": EVERYONE,
    "GET /api/v1/me": SIGNED_IN,
    # API: catalog
    "GET /api/v1/plans": EVERYONE,
    "GET /api/v1/plans/{code}": EVERYONE,
    "GET /api/v1/admin/plans": frozenset({"admin"}),
    "POST /api/v1/admin/plans": frozenset({"admin"}),
    "PATCH /api/v1/admin/plans/{code}": frozenset({"admin"}),
    "POST /api/v1/admin/plans/{code}/retire": frozenset({"admin"}),
    # API: notices (my preferences; the operator's texts)
    "GET /api/v1/me/notification-preferences": SIGNED_IN,
    "PUT /api/v1/me/notification-preferences": SIGNED_IN,
    "GET /api/v1/admin/notice-templates": frozenset({"admin"}),
    "PUT /api/v1/admin/notice-templates/{event}/{language}": frozenset({"admin"}),
    "DELETE /api/v1/admin/notice-templates/{event}/{language}/{channel}": frozenset({"admin"}),
    "GET /api/v1/admin/reminder-schedule": frozenset({"admin"}),
    "PUT /api/v1/admin/reminder-schedule": frozenset({"admin"}),
    # API: lines (a subscriber's own; staff use the console)
    "GET /api/v1/me/lines": SIGNED_IN,
    "GET /api/v1/lines/{line_id}": OWNER,
    "GET /api/v1/lines/{line_id}/esim": OWNER,
    "GET /api/v1/lines/{line_id}/esim.png": OWNER,
    "GET /api/v1/lines/{line_id}/esim.svg": OWNER,
    "GET /api/v1/lines/{line_id}/balance": OWNER,
    "GET /api/v1/lines/{line_id}/auto-renew": OWNER,
    "PUT /api/v1/lines/{line_id}/auto-renew": OWNER,
    "POST /api/v1/devices/bind": SIGNED_IN,
    # API: saved cards and auto top-up (an account's own)
    "GET /api/v1/cards": SIGNED_IN,
    "POST /api/v1/cards/setup": SIGNED_IN,
    "DELETE /api/v1/cards/{card_id}": OWNER,
    "POST /api/v1/cards/{card_id}/default": OWNER,
    "GET /api/v1/wallet/auto-topup": SIGNED_IN,
    "PUT /api/v1/wallet/auto-topup": SIGNED_IN,
    "DELETE /api/v1/devices/{line_id}": OWNER,
    # API: orders, payments, receipts
    "POST /api/v1/orders": EVERYONE,  # guests may top up any number
    "GET /api/v1/orders": SIGNED_IN,
    "GET /api/v1/orders/{order_id}": OWNER_OR_STAFF,
    "POST /api/v1/orders/{order_id}/cancel": OWNER_OR_STAFF,
    "POST /api/v1/orders/{order_id}/refund": STAFF,
    "POST /api/v1/orders/{order_id}/payments": OWNER_OR_STAFF,
    "POST /api/v1/guest/topup/lookup": EVERYONE,
    "GET /api/v1/guest/orders/{token}": LINK_HOLDER,
    "POST /api/v1/guest/orders/{token}/cancel": LINK_HOLDER,
    "POST /api/v1/guest/orders/{token}/payments": LINK_HOLDER,
    "GET /api/v1/guest/orders/{token}/receipt": LINK_HOLDER,
    "GET /api/v1/guest/orders/{token}/receipt.html": LINK_HOLDER,
    "GET /api/v1/guest/orders/{token}/receipt.pdf": LINK_HOLDER,
    "GET /api/v1/payment-methods": EVERYONE,
    "GET /api/v1/receipts": SIGNED_IN,
    "GET /api/v1/receipts/{receipt_id}": OWNER_OR_STAFF,
    "GET /api/v1/receipts/{receipt_id}.html": OWNER_OR_STAFF,
    "GET /api/v1/receipts/{receipt_id}.pdf": OWNER_OR_STAFF,
    "POST /webhooks/{provider}": EVERYONE,  # signature-checked, not role-checked
    "POST /sms/inbound": EVERYONE,  # HMAC-signed by the SMS gateway, not role-checked
    "POST /ussd": EVERYONE,  # the USSD aggregator: allow-listed address or shared secret
    # usage: network peers only (an API key with scope usage:write; no subscriber or staff
    # token opens it), and a line's history for its owner
    "POST /api/v1/usage": frozenset(),
    "GET /api/v1/lines/{line_id}/usage": OWNER,
    # portal: public pages and anonymous forms
    "GET /": EVERYONE,
    "GET /register": EVERYONE,
    "POST /register": EVERYONE,
    "GET /verify": EVERYONE,
    "POST /verify": EVERYONE,
    "POST /verify/resend": EVERYONE,
    "GET /login": EVERYONE,
    "POST /login": EVERYONE,
    "POST /logout": EVERYONE,
    "GET /password/forgot": EVERYONE,
    "POST /password/forgot": EVERYONE,
    "GET /password/reset": EVERYONE,
    "POST /password/reset": EVERYONE,
    "GET /plans": EVERYONE,
    "GET /topup": EVERYONE,
    "POST /topup": EVERYONE,
    "GET /topup/confirm": EVERYONE,
    "POST /topup/pay": EVERYONE,
    "GET /topup/orders/{token}": LINK_HOLDER,
    "POST /topup/orders/{token}/pay": LINK_HOLDER,
    "POST /topup/orders/{token}/cancel": LINK_HOLDER,
    "GET /topup/orders/{token}/receipt": LINK_HOLDER,
    "GET /topup/orders/{token}/receipt.pdf": LINK_HOLDER,
    # portal: signed-in pages
    "GET /account": SIGNED_IN,
    "GET /devices/bind": SIGNED_IN,
    "POST /devices/bind": SIGNED_IN,
    "GET /buy": SIGNED_IN,
    "POST /buy": SIGNED_IN,
    "GET /wallet/topup": SIGNED_IN,
    "POST /wallet/topup": SIGNED_IN,
    "GET /orders": SIGNED_IN,
    "GET /receipts": SIGNED_IN,
    "GET /account/notifications": SIGNED_IN,
    "POST /account/notifications": SIGNED_IN,
    # portal: A's things
    "POST /lines/{line_id}/unbind": OWNER,
    "GET /lines/{line_id}/esim": OWNER,
    "GET /lines/{line_id}/esim/qr.png": OWNER,
    "GET /lines/{line_id}/auto-renew": OWNER,
    "POST /lines/{line_id}/auto-renew": OWNER,
    "GET /lines/{line_id}/usage": OWNER,
    "GET /orders/{order_id}": OWNER,
    "GET /orders/{order_id}/result": OWNER,
    "POST /orders/{order_id}/pay": OWNER,
    "POST /orders/{order_id}/cancel": OWNER,
    "GET /receipts/{receipt_id}": OWNER,
    "GET /receipts/{receipt_id}.pdf": OWNER,
    "GET /account/cards": SIGNED_IN,
    "POST /account/cards/setup": SIGNED_IN,
    "GET /account/cards/setup/{setup_id}": OWNER,
    "POST /account/cards/{card_id}/default": OWNER,
    "POST /account/cards/{card_id}/remove": OWNER,
    "POST /account/auto-topup": SIGNED_IN,
    # sandbox hosted pages: whoever holds the payment link
    "GET /sandbox/pay/{reference}": EVERYONE,
    "GET /sandbox/pay/{reference}/scan": EVERYONE,
    "POST /sandbox/pay/{reference}/card": EVERYONE,
    "POST /sandbox/pay/{reference}/3ds": EVERYONE,
    "POST /sandbox/pay/{reference}/confirm": EVERYONE,
    "POST /sandbox/pay/{reference}/decline": EVERYONE,
    "POST /sandbox/pay/{reference}/transfer": EVERYONE,
    "GET /sandbox/setup/{setup_ref}": EVERYONE,
    "POST /sandbox/setup/{setup_ref}/card": EVERYONE,
    # development only
    "GET /dev/outbox": EVERYONE,
    # console: staff login (anyone may try), agents' and admins' pages
    "GET /console/login": EVERYONE,
    "POST /console/login": EVERYONE,
    "GET /console/second-factor": EVERYONE,
    "POST /console/second-factor": EVERYONE,
    "POST /console/logout": EVERYONE,
    "GET /console/security": STAFF,
    "POST /console/security/totp/start": STAFF,
    "POST /console/security/totp/enable": STAFF,
    "POST /console/security/totp/disable": STAFF,
    "GET /console": STAFF,
    "GET /console/accounts/{account_id}": STAFF,
    "POST /console/accounts/{account_id}/reveal": STAFF,
    "GET /console/accounts/{account_id}/messages": STAFF,
    "POST /console/accounts/{account_id}/verify/send": STAFF,
    "POST /console/accounts/{account_id}/verify/code": STAFF,
    "POST /console/accounts/{account_id}/verify/device": STAFF,
    # (the matrix's staff have verified A as a caller; tests/console prove the refusals)
    "POST /console/accounts/{account_id}/payment-link": STAFF,
    "POST /console/accounts/{account_id}/orders": STAFF,
    "GET /console/accounts/{account_id}/orders/{order_id}": STAFF,
    "POST /console/accounts/{account_id}/orders/{order_id}/wallet": STAFF,
    "POST /console/accounts/{account_id}/orders/{order_id}/bank-transfer": frozenset({"admin"}),
    "POST /console/accounts/{account_id}/orders/{order_id}/cancel": STAFF,
    "POST /console/accounts/{account_id}/orders/{order_id}/move": STAFF,
    "POST /console/accounts/{account_id}/orders/{order_id}/refund": STAFF,
    "POST /console/accounts/{account_id}/notes": STAFF,
    "GET /console/admin": frozenset({"admin"}),
    "GET /console/admin/export/{what}.csv": frozenset({"admin"}),
    "GET /console/admin/plans": frozenset({"admin"}),
    "POST /console/admin/plans": frozenset({"admin"}),
    "POST /console/admin/plans/{code}": frozenset({"admin"}),
    "POST /console/admin/plans/{code}/retire": frozenset({"admin"}),
    "GET /console/admin/payment-methods": frozenset({"admin"}),
    "POST /console/admin/payment-methods": frozenset({"admin"}),
    "GET /console/admin/notices": frozenset({"admin"}),
    "POST /console/admin/notices/{event}/{language}": frozenset({"admin"}),
    "POST /console/admin/reminders": frozenset({"admin"}),
    "GET /console/admin/staff": frozenset({"admin"}),
    "POST /console/admin/staff": frozenset({"admin"}),
    "POST /console/admin/staff/{staff_id}": frozenset({"admin"}),
    "GET /console/admin/peers": frozenset({"admin"}),
    "POST /console/admin/peers": frozenset({"admin"}),
    "POST /console/admin/peers/{name}/revoke": frozenset({"admin"}),
    "GET /console/admin/refunds": frozenset({"admin"}),
    "POST /console/admin/refunds/{event_id}/approve": frozenset({"admin"}),
    "GET /console/admin/audit": frozenset({"admin"}),
}

# Routes that end a session or a binding run last, so they do not spoil the others.
LAST = ("DELETE /api/v1/cards/", "POST /account/cards/{card_id}/remove",
        "DELETE /api/v1/devices/", "POST /lines/{line_id}/unbind", "POST /logout",
        "POST /api/v1/auth/logout", "POST /console/logout")


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for r in routes:
            if hasattr(r, "path"):
                for m in sorted(getattr(r, "methods", None) or ()):
                    if m != "HEAD":
                        found.append((m, prefix + r.path))
            elif hasattr(r, "original_router"):
                walk(r.original_router.routes, prefix + r.include_context.prefix)

    walk(app.routes, "")
    return found


@dataclass
class Caller:
    role: str
    api_headers: dict[str, str] = field(default_factory=dict)
    portal: httpx.AsyncClient | None = None
    csrf: str = ""
    console_csrf: str = ""


CSRF = re.compile(r'name="csrf" value="([^"]*)"')


async def portal_client(app: FastAPI, login: str | None, password: str) -> tuple[
    httpx.AsyncClient, str
]:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    page = await c.get("/login")
    token = CSRF.search(page.text)
    assert token
    if login is not None:
        r = await c.post("/login", data={"csrf": token.group(1), "login": login,
                                        "password": password})
        assert r.status_code == 303, r.text
        page = await c.get("/account")
        token = CSRF.search(page.text) or token
    return c, token.group(1)


def is_denied(path: str, r: httpx.Response) -> bool:
    """401/403, a 404 for an object named in the path, or the portal's log-in redirect."""
    if r.status_code in (401, 403):
        return True
    if r.status_code == 404:
        return "{" in path
    location = r.headers.get("location", "")
    return r.status_code in (302, 303, 307) and "login_required" in location


# A valid body where the route checks the caller only after reading it.
BODIES: dict[str, dict[str, Any]] = {
    "POST /api/v1/orders/{order_id}/payments": {"method": "card"},
    "POST /api/v1/guest/orders/{token}/payments": {"method": "card"},
    "PUT /api/v1/admin/notice-templates/{event}/{language}": {"channel": "sms",
                                                               "body": "{operator}: hi"},
    "PUT /api/v1/lines/{line_id}/auto-renew": {"enabled": False},
    "PUT /api/v1/admin/reminder-schedule": {"days": [7, 3, 1]},
    "PUT /api/v1/wallet/auto-topup": {"enabled": False, "threshold_minor": 0,
                                      "amount_minor": 100},
}


async def test_every_route_is_in_the_matrix_and_holds(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    await seed_plans(rt)
    app = create_app(runtime=rt)
    served = routes_of(app)
    keys = {f"{m} {p}" for m, p in served if not p.startswith("/static")}
    assert keys - MATRIX.keys() == set(), "routes missing from the role matrix"

    # The world: A and B with a line, a paid order (receipt) and a pending one each.
    password = "Harbour-Lights-2026"
    a_headers, a_id = await subscriber(client, password=password)
    b_headers, b_id = await subscriber(client, password=password)
    objects: dict[str, str] = {"code": "M30", "provider": "sandbox"}
    objects.update(event="wallet_low", language="en", channel="sms")  # a notice template
    for headers, account in ((a_headers, a_id), (b_headers, b_id)):
        line = await give_line(rt, account)
        async with unit_of_work(rt.sessions) as s:  # an eSIM, so its QR routes exist
            await s.execute(update(Line).where(Line.id == line.id).values(
                kind=LineKind.esim, esim_matching_id=f"MATCH-{uuid.uuid4().hex[:16]}"))
        await fund_wallet(rt, account, 20000)
        paid = await order(client, headers, {"kind": "plan", "line_id": str(line.id),
                                             "plan_code": "M30"})
        assert paid.status_code == 201, paid.text
        r = await pay(client, headers, paid.json()["id"], "wallet")
        assert r.status_code in (200, 201), r.text
        pending = await order(client, headers, {"kind": "plan", "line_id": str(line.id),
                                                "plan_code": "M30"})
        card = await pay(client, headers, pending.json()["id"], "card")
        if account == a_id:
            objects["line_id"] = str(line.id)
            objects["order_id"] = pending.json()["id"]
            receipts = await client.get("/api/v1/receipts", headers=headers)
            objects["receipt_id"] = receipts.json()["items"][0]["id"] if isinstance(
                receipts.json(), dict) else receipts.json()[0]["id"]
            objects["reference"] = card.json()["next_action"]["url"].rsplit("/", 1)[1]
            from tests.payments.card_helpers import save_card

            saved = await save_card(rt, client, account)
            assert saved.card_id is not None
            objects["card_id"], objects["setup_id"] = str(saved.card_id), str(saved.id)
            objects["setup_ref"] = str(saved.reference)

    callers = [Caller("anonymous"), Caller("subscriber_a", a_headers),
               Caller("subscriber_b", b_headers),
               Caller("agent", await staff_headers(client, rt, Role.agent)),
               Caller("admin", await staff_headers(client, rt, Role.admin))]
    logins = {"subscriber_a": a_headers["X-Phone"], "subscriber_b": b_headers["X-Phone"]}
    for c in callers:
        login = logins.get(c.role)
        if c.role in STAFF:
            me = await client.get("/api/v1/me", headers=c.api_headers)
            login = me.json()["email"]
        c.portal, c.csrf = await portal_client(
            app, login, "Staff-pass-2026" if c.role in STAFF else password
        )
        if c.role in STAFF:  # the console: its own login, and A verified as a caller
            assert login is not None
            c.console_csrf = await console_session(rt, c.portal, login, a_id)
        else:
            c.console_csrf = c.csrf
    objects.update(await console_world(rt, a_id, objects["order_id"]))

    def last(mp: tuple[str, str]) -> int:
        key = f"{mp[0]} {mp[1]}"
        return next((i + 1 for i, x in enumerate(LAST) if key.startswith(x)), 0)

    order_of = sorted(served, key=last)
    wrong: list[str] = []
    try:
        for method, path in order_of:
            key = f"{method} {path}"
            if path.startswith("/static"):
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: objects.get(m.group(1), uuid.uuid4().hex), path)
            for c in callers:
                if path.startswith("/api/") or path.startswith("/webhooks"):
                    headers = {"Idempotency-Key": uuid.uuid4().hex, **c.api_headers}
                    headers.pop("X-Phone", None)
                    body = BODIES.get(key, {}) if method != "GET" else None
                    r = await client.request(method, url, headers=headers, json=body)
                else:
                    assert c.portal is not None
                    token = c.console_csrf if path.startswith("/console") else c.csrf
                    data = {"csrf": token} if method != "GET" else None
                    r = await c.portal.request(method, url, data=data)
                assert r.status_code < 500, f"{key} as {c.role}: {r.status_code} {r.text[:200]}"
                if MATRIX[key] == EVERYONE:
                    continue  # public: only "never a 5xx" applies
                allowed = not is_denied(path, r)
                if allowed != (c.role in MATRIX[key]):
                    wrong.append(f"{key} as {c.role}: {r.status_code} "
                                 f"{r.headers.get('location', '')}")
    finally:
        for c in callers:
            if c.portal is not None:
                await c.portal.aclose()
    assert wrong == [], "\n".join(wrong)
