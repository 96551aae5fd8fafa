"""Checkout, top-ups, the result page, order history and receipts over plain HTTP, paying
through the built-in sandbox provider's hosted pages (mounted in the test app)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx
import pytest

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.catalog import service as catalog
from openmvno.catalog.schemas import PlanIn
from openmvno.channels.portal.topup_pages import parse_amount
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.formatting import Formatter
from openmvno.ledger import service as ledger
from openmvno.lines import service as lines
from openmvno.lines.identifiers import luhn_complete
from openmvno.lines.importer import import_lines
from openmvno.lines.models import LineKind, LineState
from openmvno.lines.states import transition
from openmvno.orders import service as orders
from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import pay_by_card, submit
from tests.portal.helpers import csrf_of, portal_login, register_verified, text_of

GB = 1024**3
KEY = re.compile(r'name="key" value="([^"]+)"')


async def _seed(rt: Runtime) -> None:
    async with unit_of_work(rt.sessions) as session:
        for row in (
            {"code": "S-MIX", "kind": "mixed", "name_zh": "全能套餐", "name_en": "All-in",
             "price_minor": 5900, "validity_days": 30, "data_gb": 20, "voice_minutes": 300,
             "sms_count": 100, "terms_en": "Domestic calls only.", "terms_zh": "仅限国内通话。"},
            {"code": "S-ADD", "kind": "addon", "name_zh": "1GB 加油包", "name_en": "1 GB add-on",
             "price_minor": 1000, "validity_days": 7, "data_gb": 1},
        ):
            await catalog.create_plan(session, PlanIn(**row), actor=None,
                                      default_currency="CNY")
        rows = ["kind,iccid,msisdn,device_serial,esim_matching_id,pin"]
        for i in range(4):
            rows.append(f"esim,{luhn_complete(f'8986003{i:012d}')},+8617000001{i:03d},,S-{i:04d},")
        await import_lines(session, rt, "\n".join(rows) + "\n")


async def _give_line(rt: Runtime, login: str, days: int = 10) -> tuple[uuid.UUID, str]:
    """An active eSIM on S-MIX with ``days`` left; returns (line id, msisdn)."""
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        line = await lines.claim_inventory(session, account_id=account.id, kind=LineKind.esim)
        line.plan_id = (await catalog.get_plan(session, "S-MIX")).id
        line.expires_at = (clock.now() + timedelta(days=days)).replace(microsecond=0)
        await transition(session, line, LineState.active, "test")
        return line.id, line.msisdn


async def _subscriber(client: httpx.AsyncClient, phone: str, name: str = "Li Lei") -> str:
    await register_verified(client, phone=phone, name=name)
    await portal_login(client, phone)
    return "+86" + phone


async def _order_count(rt: Runtime, login: str) -> int:
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        return (await orders.list_for_account(session, account.id))[1]


async def _wallet(rt: Runtime, login: str) -> int:
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, login)
        assert account is not None
        return (await ledger.wallet(session, account_id=account.id, currency="CNY")).remaining


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


async def _card(client: httpx.AsyncClient, pay_url: str, number: str) -> httpx.Response:
    """Pay on the sandbox's hosted card page; it sends the payer back (303)."""
    r = await pay_by_card(client, pay_url, number)
    assert r.status_code == 303, r.text
    return r


def _form(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to ``action``."""
    chunk = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', chunk))


async def test_renew_with_a_card_shows_new_expiry_and_balances_at_once(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138200")
    line_id, msisdn = await _give_line(rt, login, days=10)
    plans = await client.get("/plans?lang=en")
    assert 'href="/buy?plan=S-MIX"' in plans.text
    account = await client.get("/account?lang=en")
    assert f'href="/buy?plan=S-MIX&amp;line={line_id}"' in account.text
    assert "Wallet balance: CN¥0.00" in text_of(account.text)

    confirm = await client.get(f"/buy?plan=S-MIX&line={line_id}&lang=en")
    text = text_of(confirm.text)
    for shown in ("Plan renewal: All-in", f"For line {msisdn}", "CN¥59.00", "30 days", "20 GB",
                  "300 min", "100 SMS", "Domestic calls only.", "Bank card", "Alipay",
                  "Wallet balance (balance CN¥0.00)"):
        assert shown in text, shown
    fields = _form(confirm.text, "/buy")
    assert fields["key"] and fields["kind"] == "plan" and fields["line"] == str(line_id)

    r = await client.post("/buy", data={**fields, "method": "card"})
    assert r.status_code == 303
    pay_url = r.headers["location"]
    assert "/sandbox/pay/sbx_" in pay_url
    back = await _card(client, pay_url, "4242 4242 4242 4242")
    result_url = _path(back.headers["location"])
    assert re.fullmatch(r"/orders/[0-9a-f-]{36}/result\?attempt=[0-9a-f-]{36}", result_url)

    # No webhook was delivered: the page asks the provider itself.
    page = await client.get(result_url + "&lang=en")
    text = text_of(page.text)
    async with unit_of_work(rt.sessions) as session:
        line = await lines.get_owned(session, account_id=(await accounts.get_by_login(
            session, rt, login)).id, line_id=line_id)  # type: ignore[union-attr]
    fmt = Formatter("en")
    assert "Completed" in text and "All-in" in text
    assert fmt.date(line.expires_at) in text
    assert line.expires_at is not None
    assert "20 GB of 20 GB" in text and "300 min of 300 min" in text and "100 SMS of 100 SMS" in text
    assert "Receipt R" in text and 'href="/receipts/' in page.text
    assert await _order_count(rt, login) == 1


async def test_resubmitting_the_confirm_form_never_makes_a_second_order(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138201")
    line_id, _ = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-MIX&line={line_id}")
    fields = {**_form(confirm.text, "/buy"), "method": "card"}
    first = await client.post("/buy", data=fields)
    second = await client.post("/buy", data=fields)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]  # the same payment page
    assert await _order_count(rt, login) == 1
    await _card(client, first.headers["location"], "4242424242424242")
    third = await client.post("/buy", data=fields)  # once paid, back to its result
    assert third.headers["location"].endswith("/result")
    assert await _order_count(rt, login) == 1
    # A freshly rendered confirm page is a new order.
    fresh = await client.get(f"/buy?plan=S-MIX&line={line_id}")
    assert KEY.search(fresh.text).group(1) != fields["key"]  # type: ignore[union-attr]


async def test_checkout_needs_login_and_csrf(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _seed(rt)
    r = await client.get("/buy?plan=S-MIX&line=new")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    login = await _subscriber(client, "13800138202")
    r = await client.post("/buy", data={"plan": "S-MIX", "line": "new", "key": "k1",
                                        "method": "card"})
    assert r.status_code == 403 and "This form has expired" in text_of(r.text)
    assert await _order_count(rt, login) == 0


async def test_new_esim_line_with_wallet_shows_activation_code(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138203")
    # Top up 60.5 yuan by card first.
    form = await client.get("/wallet/topup")
    fields = _form(form.text, "/wallet/topup")
    r = await client.post("/wallet/topup", data={**fields, "amount": "60.5", "method": "card"})
    assert r.status_code == 303
    back = await _card(client, r.headers["location"], "5555555555554444")
    page = text_of((await client.get(_path(back.headers["location"]) + "&lang=en")).text)
    assert "CN¥60.50 was added to your wallet." in page
    assert "Wallet balance: CN¥60.50" in page
    assert await _wallet(rt, login) == 6050

    choose = await client.get("/buy?plan=S-MIX&lang=en")
    assert 'href="/buy?plan=S-MIX&amp;line=new"' in choose.text
    confirm = await client.get("/buy?plan=S-MIX&line=new&lang=en")
    assert "Wallet balance (balance CN¥60.50)" in text_of(confirm.text)
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "wallet"})
    assert r.status_code == 303 and r.headers["location"].endswith("/result")
    result = await client.get(r.headers["location"] + "?lang=en")
    assert "LPA:1$" in result.text and "/esim/qr.png" in result.text
    assert "Completed" in text_of(result.text)
    assert await _wallet(rt, login) == 150


@pytest.mark.parametrize(
    ("typed", "minor"), [("50", 5000), ("50.5", 5050), ("50.05", 5005), (" ¥1,000 ", 100000),
                         ("10", 1000)],
)
def test_amounts_in_yuan_become_exact_fen(rt: Runtime, typed: str, minor: int) -> None:
    assert parse_amount(typed, rt) == minor


@pytest.mark.parametrize(
    ("typed", "message"),
    [("50.123", "at most two decimal places"), ("abc", "for example 50 or 50.5"),
     ("-5", "for example 50 or 50.5"), ("9.99", "between"), ("1000.01", "between"),
     ("1e3", "for example"), ("", "for example")],
)
def test_bad_amounts_are_refused(rt: Runtime, typed: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_amount(typed, rt)
    assert message in err.value.message.format(**err.value.params)


async def test_topup_form_explains_a_bad_amount(client: httpx.AsyncClient, rt: Runtime) -> None:
    login = await _subscriber(client, "13800138204")
    form = await client.get("/wallet/topup?lang=en")
    fields = _form(form.text, "/wallet/topup")
    r = await client.post("/wallet/topup?lang=en",
                          data={**fields, "amount": "50.123", "method": "card"})
    assert r.status_code == 422
    assert "Amounts can have at most two decimal places." in text_of(r.text)
    assert 'value="50.123"' in r.text
    r = await client.post("/wallet/topup?lang=en", data={**fields, "amount": "5", "method": "card"})
    assert "A top-up must be between" in text_of(r.text)
    r = await client.post("/wallet/topup?lang=zh-CN",
                          data={**fields, "amount": "abc", "method": "card"})
    assert "请输入以元为单位的金额" in text_of(r.text)
    assert await _order_count(rt, login) == 0


async def test_declined_card_then_alipay_on_the_same_order(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138205")
    line_id, _ = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    back = await _card(client, r.headers["location"], "4000 0000 0000 0002")
    result_url = _path(back.headers["location"]).split("?")[0]
    page = await client.get(result_url + "?lang=zh-CN")
    assert "银行拒绝了本次支付，请换一种支付方式。" in text_of(page.text)
    page = await client.get(result_url + "?lang=en")
    text = text_of(page.text)
    assert "The payment was declined by the bank. Try another method." in text
    assert "Try another payment method" in text
    retry = _form(page.text, result_url.replace("/result", "/pay"))
    r = await client.post(result_url.replace("/result", "/pay"),
                          data={**retry, "method": "alipay"})
    assert r.status_code == 303 and "/sandbox/pay/" in r.headers["location"]
    r = await submit(client, r.headers["location"], "confirm")
    assert r.status_code == 303
    text = text_of((await client.get(_path(r.headers["location"]) + "&lang=en")).text)
    assert "Completed" in text and "1 GB add-on" in text
    assert await _order_count(rt, login) == 1


async def test_guest_topup_without_login(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _seed(rt)
    owner = await _subscriber(client, "13800138206", name="张小明")
    _, msisdn = await _give_line(rt, owner)
    page = await client.get("/account")
    await client.post("/logout", data={"csrf": csrf_of(page.text)})

    form = await client.get("/topup?lang=en")
    assert "no login needed" in text_of(form.text)
    r = await client.post("/topup?lang=en", data={"csrf": csrf_of(form.text),
                                                  "msisdn": "13900000000"})
    assert r.status_code == 404 and "No line in service has this number" in text_of(r.text)
    r = await client.post("/topup?lang=en", data={"csrf": csrf_of(form.text), "msisdn": msisdn},
                          follow_redirects=True)
    text = text_of(r.text)
    assert "张*明" in text and msisdn not in text
    assert 'value="wallet"' not in r.text  # a top-up cannot be paid from a wallet
    fields = _form(r.text, "/topup/pay")
    r = await client.post("/topup/pay", data={**fields, "amount": "20", "method": "card"})
    assert r.status_code == 303
    back = await _card(client, r.headers["location"], "4242424242424242")
    page = await client.get(_path(back.headers["location"]) + "&lang=en")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Completed" in text and "CN¥20.00 was added to the wallet of" in text
    assert msisdn not in text
    assert await _wallet(rt, owner) == 2000


async def test_history_detail_cancel_and_conflict(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138207")
    line_id, _ = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    history = await client.get("/orders?lang=zh-CN")
    text = text_of(history.text)
    assert "加油包" in text and "1GB 加油包" in text and "¥10.00" in text and "待付款" in text
    order_path = re.search(r'href="(/orders/[0-9a-f-]{36})"', history.text).group(1)  # type: ignore[union-attr]
    detail = await client.get(order_path + "?lang=en")
    assert "Cancel this order" in text_of(detail.text)
    r = await client.post(f"{order_path}/cancel", data={"csrf": csrf_of(detail.text)})
    assert r.status_code == 303
    page = await client.get(r.headers["location"] + "&lang=en")
    assert "The order was cancelled." in text_of(page.text) and "Cancel this order" not in page.text
    # A paid order cannot be cancelled: the 409 says why.
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    back = await _card(client, r.headers["location"], "4242424242424242")
    paid_path = _path(back.headers["location"]).split("/result")[0]
    await client.get(_path(back.headers["location"]))
    r = await client.post(f"{paid_path}/cancel?lang=en", data={"csrf": csrf_of(detail.text)})
    assert r.status_code == 409
    assert "already paid and fulfilled; it can no longer be cancelled" in text_of(r.text)


async def test_receipts_only_for_their_owner(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138208")
    line_id, _ = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    back = await _card(client, r.headers["location"], "4242424242424242")
    result_path = _path(back.headers["location"]).split("?")[0]
    await client.get(result_path)
    listing = await client.get("/receipts?lang=zh-CN")
    receipt_path = re.search(r'href="(/receipts/[0-9a-f-]{36})"', listing.text).group(1)  # type: ignore[union-attr]
    assert "1GB 加油包" in text_of(listing.text) and "银行卡" in text_of(listing.text)
    html = await client.get(receipt_path + "?lang=zh-CN")
    assert html.status_code == 200 and "收据" in html.text and "¥10.00" in html.text
    pdf = await client.get(receipt_path + ".pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    order_path = result_path.removesuffix("/result")

    page = await client.get("/account")
    await client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert (await client.get(receipt_path)).status_code == 303  # log in first
    await _subscriber(client, "13800138209", name="Han Meimei")
    for path in (receipt_path, receipt_path + ".pdf", order_path, result_path,
                 f"/receipts/{uuid.uuid4()}", "/receipts/nope.pdf", "/orders/nope/result"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert "%PDF" not in r.text and "1GB" not in r.text
    assert (await client.post(f"{order_path}/cancel", data={"csrf": "x"})).status_code == 403


async def test_short_wallet_keeps_the_order_payable_by_another_method(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138210")
    line_id, _ = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}&lang=en")
    r = await client.post("/buy?lang=en",
                          data={**_form(confirm.text, "/buy"), "method": "wallet"})
    assert r.status_code == 303 and r.headers["location"].endswith("/result")
    r = await client.get(r.headers["location"])  # the order's page says why
    text = text_of(r.text)
    assert "There is not enough balance for this." in text
    assert "Waiting for payment" in text and "Pay this order" in text
    assert await _wallet(rt, login) == 0 and await _order_count(rt, login) == 1
    pay_path = re.search(r'action="(/orders/[0-9a-f-]{36}/pay)"', r.text).group(1)  # type: ignore[union-attr]
    r = await client.post(pay_path, data={"csrf": csrf_of(r.text), "method": "bank_transfer"})
    assert r.status_code == 303
    r = await submit(client, r.headers["location"], "transfer")
    text = text_of((await client.get(_path(r.headers["location"]) + "&lang=en")).text)
    assert "Completed" in text and await _order_count(rt, login) == 1
