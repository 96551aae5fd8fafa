"""The portal's "Payment cards" page over plain HTTP: linked from My account; add a card
through the sandbox's page and come back to it listed; default, remove; the auto top-up
form (amounts in yuan, refusals as a flash); CSRF; another account's card is not found."""

from __future__ import annotations

import re

import httpx

from openmvno.runtime import Runtime
from tests.payments.card_helpers import fill_setup_page
from tests.portal.helpers import csrf_of, portal_login, register_verified, text_of


async def _signed_in(client: httpx.AsyncClient, phone: str) -> None:
    await register_verified(client, phone=phone)
    await portal_login(client, phone)


async def _add(client: httpx.AsyncClient, number: str) -> httpx.Response:
    page = await client.get("/account/cards")
    r = await client.post("/account/cards/setup", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and "/sandbox/setup/sbs_" in r.headers["location"]
    back = await fill_setup_page(client, r.headers["location"], number)
    assert back.status_code == 303
    return await client.get(back.headers["location"])


async def test_add_default_remove_and_auto_topup(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _signed_in(client, "13900003333")
    account = await client.get("/account")
    assert 'href="/account/cards"' in account.text
    page = await client.get("/account/cards")
    assert "No saved cards yet." in text_of(page.text)
    r = await _add(client, "4242 4242 4242 4242")
    assert r.status_code == 303 and r.headers["location"] == "/account/cards?done=card_saved"
    page = await client.get(r.headers["location"])
    text = text_of(page.text)
    assert "Your card is saved." in text and "Visa card ending in 4242" in text
    assert "expires 12/2039" in text and "Default" in text
    await _add(client, "5555 5555 5555 4444")
    page = await client.get("/account/cards")
    ids = re.findall(r'action="/account/cards/([0-9a-f-]{36})/default"', page.text)
    assert len(ids) == 1  # only the card that is not the default offers it
    r = await client.post(f"/account/cards/{ids[0]}/default",
                          data={"csrf": csrf_of(page.text)})
    assert r.headers["location"] == "/account/cards?done=card_default"
    page = await client.get("/account/cards")
    shown = text_of(page.text)
    assert shown.index("ending in 4444") < shown.index("ending in 4242")

    form = {"csrf": csrf_of(page.text), "enabled": "on", "threshold": "20", "amount": "50,00",
            "max_per_month": "2", "card": "default"}
    r = await client.post("/account/auto-topup", data=form)
    assert r.headers["location"] == "/account/cards?done=topup_on"
    text = text_of((await client.get(r.headers["location"])).text)
    assert "Auto top-up is on." in text
    assert "On: below CN¥20.00, add CN¥50.00 (0 of 2 this month)." in text
    api = (await client.get("/account/cards")).text
    assert 'value="20.00"' in api and 'value="50.00"' in api
    for bad in ({"amount": "0"}, {"threshold": "abc"}, {"max_per_month": "40"},
                {"amount": "12.345"}):
        r = await client.post("/account/auto-topup", data={**form, **bad})
        assert r.status_code == 303 and r.headers["location"] == "/account/cards"
        shown = text_of((await client.get("/account/cards")).text)
        assert "On: below CN¥20.00" in shown  # nothing changed
        assert ("amount" in shown.lower() or "times a month" in shown), shown

    r = await client.post(f"/account/cards/{ids[0]}/remove", data={"csrf": csrf_of(page.text)})
    assert r.headers["location"] == "/account/cards?done=card_removed"
    text = text_of((await client.get("/account/cards")).text)
    assert "ending in 4444" not in text and "ending in 4242" in text


async def test_a_refused_card_says_why(client: httpx.AsyncClient) -> None:
    await _signed_in(client, "13900004444")
    r = await _add(client, "4000 0000 0000 0002")
    assert r.status_code == 303 and r.headers["location"] == "/account/cards"
    text = text_of((await client.get("/account/cards")).text)
    assert "The bank declined this card; it was not saved." in text
    assert "No saved cards yet." in text


async def test_csrf_and_other_accounts(client: httpx.AsyncClient) -> None:
    await _signed_in(client, "13900005555")
    await _add(client, "4242 4242 4242 4242")
    page = await client.get("/account/cards")
    [card_id] = re.findall(r'action="/account/cards/([0-9a-f-]{36})/remove"', page.text)
    assert (await client.post(f"/account/cards/{card_id}/remove", data={})).status_code == 403
    assert (await client.post("/account/auto-topup", data={"enabled": "on"})).status_code == 403
    await client.post("/logout", data={"csrf": csrf_of(page.text)})
    await _signed_in(client, "13900006666")
    other = await client.get("/account/cards")
    r = await client.post(f"/account/cards/{card_id}/remove", data={"csrf": csrf_of(other.text)})
    assert r.status_code == 404
    assert (await client.get("/account/cards/setup/not-a-uuid")).status_code == 404
