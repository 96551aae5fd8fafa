"""Edges a subscriber can reach by clicking: odd query values, switching language on a page
that answered a form, a form sent after the session ended, and staff accounts in the
subscriber portal."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.portal.helpers import PASSWORD, csrf_of, portal_login, post_form, text_of
from tests.portal.test_shop_pages import _form, _give_line, _seed, _subscriber, _wallet

ORDER = re.compile(r'action="(/orders/[0-9a-f-]{36})/cancel"')


def _lang_link(page: str, code: str = "en") -> str:
    match = re.search(rf'href="([^"]*)" hreflang="[^"]*" data-test="lang-{code}"', page)
    assert match, "no language link"
    return match.group(1).replace("&amp;", "&")


async def _switch_language(client: httpx.AsyncClient, r: httpx.Response) -> httpx.Response:
    """Click the language link of the page ``r`` shows (relative to the URL it came from)."""
    url = urljoin(str(r.request.url), _lang_link(r.text))
    return await client.get(url)


async def _pending_order(client: httpx.AsyncClient, line_id: object) -> str:
    """Start an add-on order paid by card and leave it unpaid; its /orders/{id} path."""
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    detail = await client.get("/orders")
    match = re.search(r'href="(/orders/[0-9a-f-]{36})"', detail.text)
    assert match
    return match.group(1)


async def test_odd_page_numbers_show_the_first_page(client: httpx.AsyncClient) -> None:
    await _subscriber(client, "13800138300")
    for path in ("/orders", "/receipts"):
        for raw in ("²", "0", "-1", "abc", "9" * 12):
            r = await client.get(path, params={"page": raw})
            assert r.status_code == 200, (path, raw)


async def test_language_link_after_a_guest_topup_error_keeps_the_number(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    owner = await _subscriber(client, "13800138301")
    _, msisdn = await _give_line(rt, owner)
    page = await client.get("/account")
    await client.post("/logout", data={"csrf": csrf_of(page.text)})
    form = await client.get("/topup")
    r = await client.post("/topup", data={"csrf": csrf_of(form.text), "msisdn": msisdn},
                          follow_redirects=True)
    r = await client.post("/topup/pay?lang=zh-CN",
                          data={**_form(r.text, "/topup/pay"), "amount": "5", "method": "card"})
    assert r.status_code == 422
    switched = await _switch_language(client, r)
    assert switched.status_code == 200
    assert "Top up a phone number" in text_of(switched.text)
    assert f'value="{msisdn}"' in switched.text


async def test_language_link_after_a_refused_cancel_opens_the_order(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138302")
    line_id, _ = await _give_line(rt, login)
    order_path = await _pending_order(client, line_id)
    detail = await client.get(order_path)
    await client.post(f"{order_path}/cancel", data={"csrf": csrf_of(detail.text)})
    r = await client.post(f"{order_path}/cancel?lang=zh-CN", data={"csrf": csrf_of(detail.text)})
    assert r.status_code == 409
    switched = await _switch_language(client, r)
    assert switched.status_code == 200
    assert "This order is cancelled." in text_of(switched.text)


async def test_language_link_after_a_resend_error_opens_the_code_page(
    client: httpx.AsyncClient, frozen: FrozenClock  # the wait it names is exactly 60 s
) -> None:
    r = await post_form(
        client, "/register", "/register",
        {"name": "Li Lei", "phone": "13800138303", "password": PASSWORD, "language": "en",
         "code_channel": "sms"},
    )
    page = await client.get(r.headers["location"])
    r = await client.post("/verify/resend?lang=zh-CN", data={
        "csrf": csrf_of(page.text), "login": "+8613800138303", "channel": "sms"},
        follow_redirects=True)
    assert r.status_code == 200 and r.url.path == "/verify"  # post/redirect/get
    assert "请等待 60 秒后再获取验证码。" in text_of(r.text)
    switched = await _switch_language(client, r)
    assert switched.status_code == 200
    assert "Verify your account" in text_of(switched.text)
    assert 'value="+8613800138303"' in switched.text


async def test_language_link_after_a_checkout_error_keeps_the_plan_and_line(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138304")
    line_id, msisdn = await _give_line(rt, login)
    # Refused before an order exists: the confirm page again.
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy?lang=zh-CN",
                          data={**_form(confirm.text, "/buy"), "kind": "plan", "method": "card"})
    assert r.status_code == 422
    switched = await _switch_language(client, r)
    assert switched.status_code == 200
    text = text_of(switched.text)
    assert "Confirm your order" in text and f"For line {msisdn}" in text
    # Refused once the order exists: its result page, at its own address.
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy?lang=zh-CN",
                          data={**_form(confirm.text, "/buy"), "method": "nonsense"},
                          follow_redirects=True)
    assert r.status_code == 200 and r.url.path.endswith("/result")
    switched = await _switch_language(client, r)
    assert switched.status_code == 200
    assert "Waiting for payment" in text_of(switched.text)


async def test_a_form_sent_after_logging_out_comes_back_to_a_page_after_login(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138305")
    line_id, _ = await _give_line(rt, login)
    order_path = await _pending_order(client, line_id)
    detail = await client.get(order_path)
    token = csrf_of(detail.text)
    await client.post("/logout", data={"csrf": token})
    for action, back in ((f"{order_path}/cancel", order_path),
                         (f"/lines/{line_id}/unbind", "/account")):
        r = await client.post(action, data={"csrf": token})
        assert r.status_code == 303
        location = urlsplit(r.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"] == [back]
    await portal_login(client, login)
    assert (await client.get(order_path)).status_code == 200


async def _staff(rt: Runtime, email: str) -> None:
    async with unit_of_work(rt.sessions) as session:
        await accounts.create_staff(session, rt, name="Agent Wu", email=email,
                                    password=PASSWORD, role=Role.agent)


async def test_staff_in_the_portal_cannot_see_or_pay_a_subscribers_order(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138306")
    line_id, _ = await _give_line(rt, login)
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        await ledger.credit_wallet(session, account_id=account.id, currency="CNY",
                                   amount_minor=5000, reason=EntryReason.adjust, key="t:edges")
    # One order paid from the wallet (it has a receipt), one left unpaid.
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "wallet"})
    assert r.status_code == 303
    receipt = re.search(r'href="(/receipts/[0-9a-f-]{36})"', (await client.get("/receipts")).text)
    assert receipt
    order_path = await _pending_order(client, line_id)
    page = await client.get("/account")
    await client.post("/logout", data={"csrf": csrf_of(page.text)})

    await _staff(rt, "agent-wu@example.com")
    await portal_login(client, "agent-wu@example.com")
    token = csrf_of((await client.get("/account")).text)
    r = await client.post(f"{order_path}/pay", data={"csrf": token, "method": "wallet"})
    assert r.status_code == 404
    assert await _wallet(rt, login) == 4000
    for path in (order_path, f"{order_path}/result", receipt.group(1),
                 receipt.group(1) + ".pdf"):
        assert (await client.get(path)).status_code == 404, path
    r = await client.post(f"{order_path}/cancel", data={"csrf": token})
    assert r.status_code == 404
