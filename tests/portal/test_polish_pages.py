"""Portal polish over plain HTTP: error pages in the visitor's language, order history
with receipts and top-ups from others, balances folded per kind, the wallet at checkout,
texts, decimal commas and post/redirect/get."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.app import create_app
from openmvno.catalog import service as catalog
from openmvno.channels.portal.topup_pages import parse_amount
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.portal.helpers import csrf_of, portal_login, post_form, register_verified, text_of
from tests.portal.test_shop_pages import (
    GB,
    _card,
    _form,
    _give_line,
    _path,
    _seed,
    _subscriber,
)


@pytest.fixture
async def app_client(rt: Runtime) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A client whose app raises nothing through to the test (5xx pages are answered)."""
    app = create_app(runtime=rt)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield app, c


# ---------------------------------------------------------------- error pages


@pytest.mark.parametrize(
    ("lang", "title", "message"),
    [
        ("zh-CN", "页面不存在", "此网址没有对应的页面。"),
        ("en", "Page not found", "There is no page at this address."),
    ],
)
async def test_an_unknown_address_is_a_page_in_the_visitors_language_with_a_link_home(
    client: httpx.AsyncClient, lang: str, title: str, message: str
) -> None:
    r = await client.get("/no-such-page", headers={"Accept-Language": lang})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert f'<h1 data-test="error-title">{title}</h1>' in r.text
    assert message in text_of(r.text)
    assert '<a href="/">' in r.text
    assert f'<html lang="{lang}">' in r.text


async def test_api_and_webhook_addresses_keep_problem_details(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/no-such-thing", "/webhooks/sandbox/nothing/here"):
        r = await client.get(path, headers={"Accept": "text/html", "Accept-Language": "zh-CN"})
        assert r.headers["content-type"].startswith("application/problem+json"), path
        assert r.json()["status"] in (404, 405)
    # A program asking a portal address for JSON only gets problem details too.
    r = await client.get("/no-such-page", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_a_post_only_address_opened_in_the_browser_is_a_page(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/topup/pay?lang=en")
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert "This address only takes a form sent from its page" in text_of(r.text)
    assert "allow" in r.headers


async def test_a_logged_in_visitor_keeps_their_menu_on_the_not_found_page(
    client: httpx.AsyncClient,
) -> None:
    await register_verified(client, phone="13800138901")
    await portal_login(client, "13800138901")
    r = await client.get("/nowhere?lang=en")
    assert r.status_code == 404
    assert 'data-test="nav-account"' in r.text and 'data-test="logout"' in r.text


async def test_an_unexpected_error_on_a_portal_page_is_a_page_with_a_reference(
    app_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = app_client

    async def boom() -> None:
        raise RuntimeError("kaput")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/v1/boom", boom)
    r = await client.get("/boom", headers={"Accept-Language": "zh-CN", "X-Request-ID": "req-42"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "我们这边出了点问题" in r.text and "req-42" in text_of(r.text)
    assert "kaput" not in r.text and "Traceback" not in r.text
    api = await client.get("/api/v1/boom")
    assert api.status_code == 500 and api.json()["code"] == "internal_error"


# ---------------------------------------------------------------- order history


async def _logout(client: httpx.AsyncClient) -> None:
    page = await client.get("/account")
    await client.post("/logout", data={"csrf": csrf_of(page.text)})


async def _guest_topup(client: httpx.AsyncClient, msisdn: str, amount: str) -> str:
    """Top up ``msisdn`` through /topup, paying by card; returns the result page's path
    (opened once: that settles the payment with the provider)."""
    form = await client.get("/topup")
    r = await client.post("/topup", data={"csrf": csrf_of(form.text), "msisdn": msisdn})
    page = await client.get(r.headers["location"]) if r.status_code == 303 else r
    fields = _form(page.text, "/topup/pay")
    r = await client.post("/topup/pay", data={**fields, "amount": amount, "method": "card"})
    assert r.status_code == 303, r.text
    back = await _card(client, r.headers["location"], "4242424242424242")
    result = _path(back.headers["location"])
    assert (await client.get(result)).status_code == 200
    return result


async def test_history_links_receipts_and_shows_top_ups_others_paid(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    owner = await _subscriber(client, "13800138910", name="张小明")
    line_id, msisdn = await _give_line(rt, owner)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    back = await _card(client, r.headers["location"], "4242424242424242")
    await client.get(_path(back.headers["location"]))  # settles the payment
    await _logout(client)

    # A guest, then another subscriber, top up the owner's number.
    result = await _guest_topup(client, msisdn, "20")
    guest_page = await client.get(result + "&lang=en")
    assert "Completed" in text_of(guest_page.text)
    await _subscriber(client, "13800138911", name="李雷")
    await _guest_topup(client, msisdn, "30")
    await _logout(client)

    await portal_login(client, "13800138910")
    history = await client.get("/orders?lang=en")
    rows = re.findall(r'<tr data-test="order-row".*?</tr>', history.text, flags=re.S)
    assert len(rows) == 3
    others = [r for r in rows if 'data-from-other="true"' in r]
    assert len(others) == 2
    texts = [text_of(r) for r in others]
    assert all("Top-up from someone else" in t and msisdn in t for t in texts)
    assert any("Paid by a guest" in t and "CN¥20.00" in t for t in texts)
    assert any("Paid by 李*" in t and "CN¥30.00" in t for t in texts)
    assert "李雷" not in history.text
    # Others' top-ups carry no link to their order or its receipt (the payer's).
    assert all("/orders/" not in r and "/receipts/" not in r for r in others)
    own = next(r for r in rows if 'data-from-other="true"' not in r)
    receipt = re.search(r'href="(/receipts/[0-9a-f-]{36})" data-test="order-receipt">(R\d{4}-\d{6})<',
                        own)
    assert receipt, own
    opened = await client.get(receipt.group(1) + "?lang=en")
    assert opened.status_code == 200 and receipt.group(2) in opened.text
    zh = text_of((await client.get("/orders?lang=zh-CN")).text)
    assert "他人代充" in zh and "付款人：李*" in zh

    # The payer of the second top-up sees it as their own order, the number masked.
    await _logout(client)
    await portal_login(client, "13800138911")
    theirs = await client.get("/orders?lang=en")
    assert theirs.text.count('data-test="order-row"') == 1
    assert "Top-up from someone else" not in theirs.text and msisdn not in theirs.text
    assert 'data-test="order-receipt"' in theirs.text


async def test_a_guest_opens_their_receipt_from_the_result_page(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    owner = await _subscriber(client, "13800138912")
    _, msisdn = await _give_line(rt, owner)
    await _logout(client)
    result = await _guest_topup(client, msisdn, "25")
    page = await client.get(result + "&lang=en")
    token_path = result.split("?")[0]
    assert f'href="{token_path}/receipt"' in page.text
    receipt = await client.get(token_path + "/receipt?lang=en")
    assert receipt.status_code == 200 and "CN¥25.00" in text_of(receipt.text)


# ---------------------------------------------------------------- my account: totals per kind


async def test_my_account_shows_one_total_per_kind_with_a_bar_and_folds_the_details(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138920")
    line_id, _ = await _give_line(rt, login)
    now = clock.now()
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        mix, addon = await catalog.get_plan(session, "S-MIX"), await catalog.get_plan(
            session, "S-ADD")
        await ledger.grant_plan(session, account_id=account.id, line_id=line_id, plan=mix,
                                order_id=None, valid_from=now, valid_until=now + timedelta(days=30),
                                key="t:mix")
        for i in range(6):  # six 1 GB add-ons
            await ledger.grant_plan(session, account_id=account.id, line_id=line_id, plan=addon,
                                    order_id=None, valid_from=now,
                                    valid_until=now + timedelta(days=7), key=f"t:add:{i}")
        # An early renewal: 20 GB more that start when the plan ends.
        await ledger.grant_plan(session, account_id=account.id, line_id=line_id, plan=mix,
                                order_id=None, valid_from=now + timedelta(days=30),
                                valid_until=now + timedelta(days=60), key="t:next")
    page = await client.get("/account?lang=en")
    card = page.text.split(f'data-line-id="{line_id}"', 1)[1].split("</article>", 1)[0]
    totals = re.findall(r'<div class="total" data-test="total" data-kind="(\w+)">(.*?)</div>',
                        card, flags=re.S)
    assert [kind for kind, _ in totals] == ["data", "voice", "sms"]
    data = text_of(totals[0][1])
    assert "26 GB / 26 GB" in data and "+ 20 GB from" in data
    assert f'<meter min="0" max="{26 * GB}" value="{26 * GB}"' in totals[0][1]
    assert "300 min / 300 min" in text_of(totals[1][1])
    assert "100 SMS / 100 SMS" in text_of(totals[2][1])
    # The twelve allowances are there, folded (closed) under one summary.
    details = re.search(r"<details[^>]*>(.*?)</details>", card, flags=re.S)
    assert details and "open" not in details.group(0).split(">", 1)[0]
    assert details.group(1).count('data-test="bucket"') == 12
    assert "Details (12 allowances)" in text_of(details.group(1))
    assert "style=" not in page.text  # the policy allows no inline style
    zh = (await client.get("/account?lang=zh-CN")).text
    assert "明细（12 项额度）" in zh and "流量" in zh


# ---------------------------------------------------------------- checkout: the wallet


async def _credit(rt: Runtime, login: str, minor: int) -> None:
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        await ledger.credit_wallet(session, account_id=account.id, currency="CNY",
                                   amount_minor=minor, reason=EntryReason.topup,
                                   key=f"test:{login}:{minor}")


async def test_checkout_offers_a_short_wallet_disabled_with_the_shortfall_and_a_top_up_link(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138930")
    line_id, _ = await _give_line(rt, login)
    await _credit(rt, login, 2050)
    confirm = await client.get(f"/buy?plan=S-MIX&line={line_id}&lang=en")
    wallet = re.search(r'<input type="radio" name="method" value="wallet"[^>]*>', confirm.text)
    assert wallet and " disabled" in wallet.group(0) and "checked" not in wallet.group(0)
    text = text_of(confirm.text)
    assert "Wallet balance (balance CN¥20.50)" in text
    assert "Not enough balance: CN¥38.50 short." in text
    assert 'href="/wallet/topup?amount=38.5"' in confirm.text
    card = re.search(r'<input type="radio" name="method" value="card"[^>]*>', confirm.text)
    assert card and "checked" in card.group(0)  # a usable method is preselected
    zh = text_of((await client.get(f"/buy?plan=S-MIX&line={line_id}&lang=zh-CN")).text)
    assert "余额不足，还差 ¥38.50。" in zh
    top_up = await client.get("/wallet/topup?amount=38.5")
    assert 'value="38.5"' in top_up.text

    # Enough for the 10 yuan add-on: the wallet is offered, usable.
    addon = await client.get(f"/buy?plan=S-ADD&line={line_id}&lang=en")
    wallet = re.search(r'<input type="radio" name="method" value="wallet"[^>]*>', addon.text)
    assert wallet and "disabled" not in wallet.group(0)
    assert "Not enough balance" not in addon.text


# ---------------------------------------------------------------- amounts with a comma


@pytest.mark.parametrize(
    ("typed", "minor"),
    [("50,00", 5000), ("50,5", 5050), ("50,05", 5005), ("¥ 60,50", 6050), ("1,000", 100000),
     ("1,000.00", 100000), ("５０，５０", 5050)],
)
def test_a_decimal_comma_is_the_decimal_point(rt: Runtime, typed: str, minor: int) -> None:
    from openmvno.channels.portal.forms import clean

    form, problem = clean({"amount": typed})  # what the form does first (NFKC)
    assert problem is None
    assert parse_amount(form["amount"], rt) == minor


@pytest.mark.parametrize("typed", ["50,000,0", "1.000,50", "1,00,000", "50,", ",50", "5,0,0"])
def test_other_commas_are_refused_saying_how_to_write_the_amount(rt: Runtime, typed: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_amount(typed, rt)
    assert err.value.code == "amount_separators"


async def test_the_wallet_top_up_reads_50_comma_00_as_fifty_yuan(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _subscriber(client, "13800138940")
    form = await client.get("/wallet/topup?lang=en")
    assert "a decimal comma works too (50,50 is 50.50 yuan)" in text_of(form.text)
    r = await client.post("/wallet/topup", data={**_form(form.text, "/wallet/topup"),
                                                 "amount": "50,00", "method": "card"})
    assert r.status_code == 303
    pay = await client.get(r.headers["location"])
    assert "CN¥50.00" in text_of(pay.text) or "¥50.00" in text_of(pay.text)
    assert "5,000" not in text_of(pay.text)
    r = await client.post("/wallet/topup?lang=en", data={**_form(form.text, "/wallet/topup"),
                                                         "amount": "1.000,50", "method": "card"})
    assert r.status_code == 422
    assert "group thousands only by three (1,000)" in text_of(r.text)


# ---------------------------------------------------------------- post/redirect/get


async def test_the_number_look_up_redirects_to_a_confirm_page_that_can_be_reloaded(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    owner = await _subscriber(client, "13800138970", name="张小明")
    _, msisdn = await _give_line(rt, owner)
    await _logout(client)
    assert (await client.get("/topup/confirm")).headers["location"] == "/topup"  # no look-up
    form = await client.get("/topup?lang=en")
    r = await client.post("/topup", data={"csrf": csrf_of(form.text), "msisdn": msisdn})
    assert r.status_code == 303 and r.headers["location"] == "/topup/confirm"
    for _ in range(2):  # a reload shows the same step, without a new look-up
        page = await client.get("/topup/confirm")
        assert page.status_code == 200 and "张*明" in text_of(page.text)
        assert msisdn not in text_of(page.text)
        assert _form(page.text, "/topup/pay")["msisdn"] == msisdn
    zh = await client.get("/topup/confirm?lang=zh-CN")
    assert "张*明" in zh.text and "充值" in text_of(zh.text)
    # The state is signed: an altered cookie is no look-up at all.
    value = client.cookies.get("omv_topup", path="/topup")
    assert value
    client.cookies.set("omv_topup", value.replace(value[5], "A" if value[5] != "A" else "B", 1),
                       path="/topup")
    assert (await client.get("/topup/confirm")).headers["location"] == "/topup"


async def test_a_refused_code_request_redirects_to_the_code_page_which_says_why_once(
    client: httpx.AsyncClient, frozen: FrozenClock  # the wait it names is exactly 60 s
) -> None:
    r = await post_form(client, "/register", "/register",
                        {"name": "Li Lei", "phone": "13800138971", "password": "Spring-2026",
                         "language": "en", "code_channel": "sms"})
    page = await client.get(r.headers["location"])
    r = await client.post("/verify/resend?lang=en", data={
        "csrf": csrf_of(page.text), "login": "13800138971", "channel": "sms"})
    assert r.status_code == 303 and r.headers["location"] == "/verify?login=13800138971"
    shown = await client.get(r.headers["location"])
    assert "Please wait 60 seconds before asking for another code." in text_of(shown.text)
    assert 'value="13800138971"' in shown.text
    again = await client.get(r.headers["location"])  # shown once, not on every visit
    assert "Please wait" not in text_of(again.text)


async def test_a_forged_flash_is_never_shown(client: httpx.AsyncClient) -> None:
    from openmvno.channels.portal.web import seal

    forged = seal("not-the-server-key-0123456789", "flash",
                  {"to": "/login", "m": "Call 400-000 now!", "p": {}, "t": []})
    client.cookies.set("omv_flash", forged)
    assert "Call 400-000" not in (await client.get("/login")).text


async def test_a_short_wallet_lands_on_the_orders_own_page_saying_why(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138972")
    line_id, _ = await _give_line(rt, login)
    await _credit(rt, login, 500)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    fields = {**_form(confirm.text, "/buy"), "method": "wallet"}  # an old form, wallet chosen
    r = await client.post("/buy?lang=zh-CN", data=fields)
    assert r.status_code == 303 and re.fullmatch(r"/orders/[0-9a-f-]{36}/result",
                                                 r.headers["location"])
    page = await client.get(r.headers["location"])
    assert page.status_code == 200
    assert "余额不足" in text_of(page.text) and "待付款" in text_of(page.text)
