"""A guest reaches their order, its payment, its result and its receipt only through the
link token given when the order was created; the order's id opens nothing (API and
portal), the number is masked everywhere, and the top-up credits the owner confirmed at
look-up, never whoever holds the number when the payment lands."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from openmvno.accounts.identity import mask_phone
from openmvno.app import create_app
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.orders.models import Order
from openmvno.runtime import Runtime
from openmvno.security import sha256
from tests.orders.guests import GUEST, guest_order, guest_pay, guest_view
from tests.orders.helpers import (
    give_line,
    order,
    pay,
    reference_of,
    send_webhook,
    subscriber,
    use_tiny_provider,
    wallet_minor,
)
from tests.portal.helpers import csrf_of, portal_login, register_verified, text_of


async def _set_owner(rt: Runtime, line_id: uuid.UUID, account_id: uuid.UUID | None) -> None:
    """What ``lines.unbind_device`` (None) or another account's ``bind_device`` does."""
    async with unit_of_work(rt.sessions) as s:
        await s.execute(update(Line).where(Line.id == line_id).values(account_id=account_id))


async def _stored(rt: Runtime, order_id: str) -> Order:
    async with unit_of_work(rt.sessions) as s:
        found = await s.get(Order, uuid.UUID(order_id))
        assert found is not None
        return found


# ---------------------------------------------------------------- API


async def test_the_create_response_gives_the_link_once_and_only_its_hash_is_stored(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": 3000}
    r = await order(client, None, body, key="guest-key-1")
    assert r.status_code == 201, r.text
    created = r.json()
    token = created["guest_token"]
    assert len(token) >= 43  # 256 random bits, URL-safe
    assert created["guest_url"] == f"{GUEST}/{token}"
    assert created["result_page_url"] == f"http://testserver/topup/orders/{token}"
    assert line.msisdn not in r.text and created["msisdn"] == mask_phone(line.msisdn)
    stored = await _stored(rt, created["id"])
    assert stored.guest_link_hash == sha256(token)
    assert token not in str(stored.__dict__)
    # The same create again neither makes a second order nor gives the link out again.
    again = await order(client, None, body, key="guest-key-1")
    assert again.status_code == 409
    assert again.json()["code"] == "guest_order_exists"
    assert token not in again.text


async def test_the_link_shows_the_order_with_the_number_masked_and_nothing_else_does(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    created, token = await guest_order(client, line.msisdn)
    seen = await guest_view(client, token)
    assert seen.status_code == 200, seen.text
    assert seen.json()["id"] == created["id"]
    assert seen.json()["msisdn"] == mask_phone(line.msisdn)
    assert seen.json()["line_id"] is None
    assert line.msisdn not in seen.text
    assert "guest_token" not in seen.json() or seen.json()["guest_token"] is None
    for wrong in (uuid.uuid4().hex + uuid.uuid4().hex, created["id"], token[:-1], "x"):
        r = await guest_view(client, wrong)
        assert r.status_code == 404, wrong
        assert r.json()["code"] == "order_not_found"


@pytest.mark.parametrize("who", ["anonymous", "another subscriber", "the number's owner"])
async def test_the_order_id_alone_opens_nothing_in_the_api(
    client: httpx.AsyncClient, rt: Runtime, who: str
) -> None:
    """Not the order, not a payment, not a cancel: each is the same 404 as a made-up id."""
    provider = use_tiny_provider(rt)
    owner_headers, owner = await subscriber(client)
    line = await give_line(rt, owner)
    body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": 3000}
    created = (await order(client, None, body)).json()
    oid = created["id"]
    headers = {
        "anonymous": None,
        "another subscriber": (await subscriber(client))[0],
        "the number's owner": owner_headers,
    }[who]
    h = headers or {}
    for r in (
        await client.get(f"/api/v1/orders/{oid}", headers=h),
        await pay(client, headers, oid, "card"),
        await client.post(f"/api/v1/orders/{oid}/cancel", headers=h),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "order_not_found"
    assert provider.created == 0
    token = created["guest_token"]
    assert (await guest_view(client, token)).json()["state"] == "pending_payment"
    # Paid through the link: the receipt is not reachable by its id either.
    ref = reference_of(await guest_pay(client, token, "alipay"))
    await send_webhook(client, provider, ref, "succeeded")
    rid = (await guest_view(client, token)).json()["result"]["receipt_id"]
    for suffix in ("", ".html", ".pdf"):
        r = await client.get(f"/api/v1/receipts/{rid}{suffix}", headers=h)
        assert r.status_code == (401 if headers is None else 404), r.text


async def test_a_guest_pays_cancels_and_gets_the_receipt_through_the_link(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    _, owner = await subscriber(client, name="张三明")
    line = await give_line(rt, owner)
    _, token = await guest_order(client, line.msisdn, 2500)
    started = await guest_pay(client, token, "card")
    assert started.status_code == 201, started.text
    # The payment page sends the payer back to the order's page for the guest.
    return_url = started.json()["next_action"]["return_url"]
    assert return_url == f"http://testserver/topup/orders/{token}"
    await send_webhook(client, provider, reference_of(started), "succeeded")
    done = (await guest_view(client, token)).json()
    assert done["state"] == "fulfilled"
    assert done["result"]["receipt_url"] == f"{GUEST}/{token}/receipt"
    assert await wallet_minor(rt, owner) == 2500
    receipt = await client.get(f"{GUEST}/{token}/receipt")
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["msisdn"] == mask_phone(line.msisdn)
    assert receipt.json()["buyer"] == ""
    assert receipt.json()["pdf_url"] == f"{GUEST}/{token}/receipt.pdf"
    html = await client.get(f"{GUEST}/{token}/receipt.html")
    assert html.status_code == 200 and mask_phone(line.msisdn) in html.text
    assert line.msisdn not in html.text and "张三明" not in html.text
    assert (await client.get(f"{GUEST}/{token}/receipt.pdf")).content.startswith(b"%PDF")
    assert (await client.get(f"{GUEST}/{token}x/receipt")).status_code == 404
    # Another guest order, cancelled through its link; once paid, a cancel is a 409.
    _, other = await guest_order(client, line.msisdn, 1000)
    assert (await client.get(f"{GUEST}/{other}/receipt")).status_code == 404  # not paid yet
    cancelled = await client.post(f"{GUEST}/{other}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    late = await client.post(f"{GUEST}/{token}/cancel")
    assert late.status_code == 409 and late.json()["code"] == "order_not_cancellable"


async def test_the_link_token_never_reaches_the_request_log(
    client: httpx.AsyncClient, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    _, token = await guest_order(client, line.msisdn)
    caplog.set_level(logging.INFO, logger="openmvno.http")
    assert (await guest_view(client, token)).status_code == 200
    assert (await client.get(f"/topup/orders/{token}")).status_code == 200
    paths = [rec.__dict__["path"] for rec in caplog.records if rec.name == "openmvno.http"]
    assert paths == [f"{GUEST}/***", "/topup/orders/***"]
    assert token not in caplog.text


# ---------------------------------------------------------------- the owner confirmed at look-up


async def test_the_top_up_credits_the_owner_confirmed_at_look_up(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    provider = use_tiny_provider(rt)
    _, owner = await subscriber(client, name="张三明")
    line = await give_line(rt, owner)
    look = (await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn})).json()
    assert look["owner"] == "张*明"
    created, token = await guest_order(client, line.msisdn, confirmation=look["confirmation"])
    stored = await _stored(rt, created["id"])
    assert (stored.credited_account_id, stored.line_id) == (owner, line.id)
    ref = reference_of(await guest_pay(client, token, "alipay"))
    await send_webhook(client, provider, ref, "succeeded")
    assert (await guest_view(client, token)).json()["state"] == "fulfilled"
    assert await wallet_minor(rt, owner) == 3000


@pytest.mark.parametrize("rebound", ["to another account", "unbound"])
async def test_a_number_that_changes_hands_before_the_payment_lands_credits_nobody(
    client: httpx.AsyncClient, rt: Runtime, rebound: str
) -> None:
    """The guest confirmed 张*明; the number is then bound to someone else (or to nobody)
    and the payment lands: the new holder gets nothing, the order fails with a reason the
    guest can read, and the payment is refunded."""
    provider = use_tiny_provider(rt)
    _, first = await subscriber(client, name="张三明")
    line = await give_line(rt, first)
    look = (await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn})).json()
    _, token = await guest_order(client, line.msisdn, confirmation=look["confirmation"])
    ref = reference_of(await guest_pay(client, token, "alipay"))
    _, second = await subscriber(client)
    await _set_owner(rt, line.id, second if rebound == "to another account" else None)
    r = await send_webhook(client, provider, ref, "succeeded")
    assert r.status_code == 200, r.text
    got = (await guest_view(client, token)).json()
    assert got["state"] == "failed"
    assert got["failure_code"] == "number_owner_changed"
    assert "changed owner" in got["failure_reason"]
    assert got["result"].get("refunded_to") == "provider" or got["result"]["refund_due"]
    assert await wallet_minor(rt, first) == 0
    assert await wallet_minor(rt, second) == 0


async def test_a_number_rebound_between_look_up_and_order_is_refused(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, first = await subscriber(client, name="张三明")
    line = await give_line(rt, first)
    look = (await client.post("/api/v1/guest/topup/lookup", json={"msisdn": line.msisdn})).json()
    _, second = await subscriber(client)
    await _set_owner(rt, line.id, second)
    body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": 3000,
            "confirmation": look["confirmation"]}
    r = await order(client, None, body)
    assert r.status_code == 409
    assert r.json()["code"] == "number_owner_changed"
    async with unit_of_work(rt.sessions) as s:
        assert (await s.scalars(select(Order))).all() == []


# ---------------------------------------------------------------- portal


@asynccontextmanager
async def _browser(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Another visitor: their own cookies."""
    transport = httpx.ASGITransport(app=create_app(runtime=rt))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def _form(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to ``action``."""
    chunk = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', chunk))


async def pay_by_card(guest: httpx.AsyncClient, pay_url: str) -> httpx.Response:
    """Pay on the sandbox's hosted card page as a browser does (its hidden fields too)."""
    path = urlsplit(pay_url).path
    page = await guest.get(path)
    form = re.search(rf'action="[^"]*{re.escape(path)}/card[^"]*"(.*?)</form>', page.text, re.S)
    assert form is not None, page.text
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
    card = {"card_number": "4242424242424242", "card_expiry": "12/39", "card_cvc": "123"}
    return await guest.post(f"{path}/card", data={**hidden, **card})


async def _portal_guest_order(
    guest: httpx.AsyncClient, msisdn: str, amount: str = "20"
) -> tuple[str, httpx.Response]:
    """Through /topup as a guest: look up, confirm, pay by card; returns the link token
    (from the confirm form) and the answer of the pay step (to the sandbox pay page)."""
    form = await guest.get("/topup")
    confirm = await guest.post("/topup", data={"csrf": csrf_of(form.text), "msisdn": msisdn},
                               follow_redirects=True)
    assert confirm.status_code == 200, confirm.text
    fields = _form(confirm.text, "/topup/pay")
    r = await guest.post("/topup/pay", data={**fields, "amount": amount, "method": "card"})
    assert r.status_code == 303, r.text
    assert "/sandbox/pay/" in r.headers["location"]
    return fields.get("link", ""), r


async def _guest_order_id(rt: Runtime) -> str:
    """The id of the one guest order (which the guest was never shown)."""
    async with unit_of_work(rt.sessions) as s:
        [oid] = (await s.scalars(select(Order.id).where(Order.account_id.is_(None)))).all()
    return str(oid)


async def test_the_portal_link_shows_the_result_and_receipt_with_the_number_masked(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, owner = await subscriber(client, name="张三明")
    line = await give_line(rt, owner)
    async with _browser(rt) as guest:
        token, r = await _portal_guest_order(guest, line.msisdn)
        back = await pay_by_card(guest, r.headers["location"])
        assert back.status_code == 303
        location = back.headers["location"].removeprefix("http://testserver")
        assert location.startswith(f"/topup/orders/{token}?attempt=")
        page = await guest.get(location + "&lang=en")
        assert page.status_code == 200
        text = text_of(page.text)
        assert "Completed" in text and "CN¥20.00 was added to the wallet of" in text
        assert mask_phone(line.msisdn) in text and line.msisdn not in page.text
        assert "Keep the address of this page" in text
        assert f'href="/topup/orders/{token}/receipt"' in page.text
        receipt = await guest.get(f"/topup/orders/{token}/receipt?lang=en")
        assert receipt.status_code == 200
        assert mask_phone(line.msisdn) in receipt.text and line.msisdn not in receipt.text
        pdf = await guest.get(f"/topup/orders/{token}/receipt.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert await wallet_minor(rt, owner) == 2000


async def test_the_portal_opens_a_guest_order_by_its_link_only(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """By its id a guest order is a 404 for a stranger and for a logged-in subscriber, on
    the result page, the detail page, pay and cancel; so is a wrong link. The link holder
    can cancel it."""
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    async with _browser(rt) as guest, _browser(rt) as stranger, _browser(rt) as other:
        token, _ = await _portal_guest_order(guest, line.msisdn)
        oid = await _guest_order_id(rt)
        await register_verified(other, phone="13800138555")
        await portal_login(other, "13800138555")
        for visitor in (stranger, other):
            anon = await visitor.get("/topup")
            csrf = csrf_of((await visitor.get("/account")).text) if visitor is other \
                else csrf_of(anon.text)
            assert (await visitor.get(f"/orders/{oid}/result")).status_code == 404
            paid = await visitor.post(f"/orders/{oid}/pay", data={"csrf": csrf,
                                                                   "method": "card"})
            assert paid.status_code == 404
            for path in (f"/topup/orders/{oid}", f"/topup/orders/{uuid.uuid4().hex * 2}",
                         f"/topup/orders/{oid}/receipt", f"/topup/orders/{token}x"):
                assert (await visitor.get(path)).status_code == 404, path
        assert (await other.get(f"/orders/{oid}")).status_code == 404
        cancel = await other.post(f"/orders/{oid}/cancel",
                                  data={"csrf": csrf_of((await other.get("/account")).text)})
        assert cancel.status_code == 404
        assert (await _stored(rt, oid)).state == "pending_payment"
        # The link holder sees it waiting, with its cancel button, and cancels it.
        page = await guest.get(f"/topup/orders/{token}?lang=en")
        assert page.status_code == 200 and "Waiting for payment" in text_of(page.text)
        assert line.msisdn not in page.text
        fields = _form(page.text, f"/topup/orders/{token}/cancel")
        r = await guest.post(f"/topup/orders/{token}/cancel", data=fields)
        assert r.status_code == 303
        assert r.headers["location"] == f"/topup/orders/{token}?done=order_cancelled"
        assert "The order was cancelled." in text_of(
            (await guest.get(r.headers["location"] + "&lang=en")).text)
    assert (await _stored(rt, oid)).state == "cancelled"


async def test_the_same_portal_form_sent_twice_finds_its_order_again(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    async with _browser(rt) as guest:
        form = await guest.get("/topup")
        confirm = await guest.post("/topup", data={"csrf": csrf_of(form.text),
                                                   "msisdn": line.msisdn}, follow_redirects=True)
        fields = {**_form(confirm.text, "/topup/pay"), "amount": "20", "method": "card"}
        first = await guest.post("/topup/pay", data=fields)
        second = await guest.post("/topup/pay", data=fields)
        assert first.status_code == second.status_code == 303
        assert second.headers["location"] == first.headers["location"]  # the same payment
        async with unit_of_work(rt.sessions) as s:
            assert len((await s.scalars(select(Order))).all()) == 1


async def test_the_portal_refuses_a_top_up_when_the_owner_changed_since_the_look_up(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, first = await subscriber(client, name="张三明")
    _, second = await subscriber(client, name="李四")
    line = await give_line(rt, first)
    async with _browser(rt) as guest:
        form = await guest.get("/topup")
        confirm = await guest.post("/topup", data={"csrf": csrf_of(form.text),
                                                   "msisdn": line.msisdn}, follow_redirects=True)
        assert "张*明" in text_of(confirm.text)
        await _set_owner(rt, line.id, second)
        r = await guest.post("/topup/pay?lang=en", data={**_form(confirm.text, "/topup/pay"),
                                                        "amount": "20", "method": "card"})
        assert r.status_code == 409
        text = text_of(r.text)
        assert "The owner of this number has changed since you checked it" in text
        assert "李*" in text  # shown the number's owner now, to check again
    async with unit_of_work(rt.sessions) as s:
        assert (await s.scalars(select(Order))).all() == []


async def test_a_signed_in_subscriber_topping_up_another_number_owns_that_order(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    """Their own order, by id as ever (no link needed), the number masked there too; the
    number's owner cannot open it."""
    owner_headers, owner = await subscriber(client)
    line = await give_line(rt, owner)
    buyer_headers, _ = await subscriber(client)
    body = {"kind": "guest_topup", "msisdn": line.msisdn, "amount_minor": 3000}
    created = await order(client, buyer_headers, body)
    assert created.status_code == 201, created.text
    assert created.json()["guest_token"] is None
    oid = created.json()["id"]
    mine = await client.get(f"/api/v1/orders/{oid}", headers=buyer_headers)
    assert mine.status_code == 200
    assert mine.json()["msisdn"] == mask_phone(line.msisdn) and line.msisdn not in mine.text
    listed = await client.get("/api/v1/orders", headers=buyer_headers)
    assert line.msisdn not in listed.text and listed.json()["total"] == 1
    assert (await client.get(f"/api/v1/orders/{oid}", headers=owner_headers)).status_code == 404


async def test_the_portal_history_lists_a_top_up_of_another_number_masked(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, owner = await subscriber(client)
    line = await give_line(rt, owner)
    async with _browser(rt) as buyer:
        await register_verified(buyer, phone="13800138556")
        await portal_login(buyer, "13800138556")
        form = await buyer.get("/topup")
        confirm = await buyer.post("/topup", data={"csrf": csrf_of(form.text),
                                                   "msisdn": line.msisdn}, follow_redirects=True)
        r = await buyer.post("/topup/pay", data={**_form(confirm.text, "/topup/pay"),
                                                 "amount": "20", "method": "card"})
        assert r.status_code == 303, r.text
        history = await buyer.get("/orders?lang=en")
        assert mask_phone(line.msisdn) in text_of(history.text)
        assert line.msisdn not in history.text
        assert re.search(r'href="/orders/[0-9a-f-]{36}"', history.text)  # by id, as ever
