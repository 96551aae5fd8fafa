"""The API of saved cards and auto top-up, as the mobile app uses it: start a setup (the
hosted page's URL), finish on the page, see the card; default, remove; auto top-up on
with checked numbers; someone else's card is not found; bad input is a 422."""

from __future__ import annotations

from typing import Any

import httpx

from openmvno.runtime import Runtime
from tests.orders.helpers import subscriber
from tests.payments.card_helpers import fill_setup_page


async def _saved(client: httpx.AsyncClient, headers: dict[str, str], number: str) -> Any:
    r = await client.post("/api/v1/cards/setup", headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"].startswith("http://testserver/sandbox/setup/sbs_")
    assert body["next_action"] == {"type": "redirect", "url": body["url"]}
    page = await fill_setup_page(client, body["url"], number)
    assert page.status_code == 303
    listed = await client.get("/api/v1/cards", headers=headers)  # finishes the setup
    assert listed.status_code == 200
    return listed.json()["cards"]


async def test_save_list_default_remove(rt: Runtime, client: httpx.AsyncClient, deliver: Any) -> None:
    headers, _ = await subscriber(client)
    assert (await client.get("/api/v1/cards", headers=headers)).json() == {"cards": []}
    [visa] = await _saved(client, headers, "4242 4242 4242 4242")
    assert {k: visa[k] for k in ("brand", "last4", "exp_month", "exp_year", "is_default")} == {
        "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2039, "is_default": True}
    assert visa["expires_soon"] is False and "card_ref" not in visa
    cards = await _saved(client, headers, "5555 5555 5555 4444")
    master = next(c for c in cards if c["last4"] == "4444")
    r = await client.post(f"/api/v1/cards/{master['id']}/default", headers=headers)
    assert r.status_code == 200 and r.json()["is_default"] is True
    listed = (await client.get("/api/v1/cards", headers=headers)).json()["cards"]
    assert [c["last4"] for c in listed] == ["4444", "4242"]
    r = await client.delete(f"/api/v1/cards/{master['id']}", headers=headers)
    assert r.status_code == 204
    again = await client.delete(f"/api/v1/cards/{master['id']}", headers=headers)
    assert again.status_code == 204  # a retried DELETE changes nothing
    listed = (await client.get("/api/v1/cards", headers=headers)).json()["cards"]
    assert [(c["last4"], c["is_default"]) for c in listed] == [("4242", True)]
    assert await deliver() >= 1  # the detach job at the provider


async def test_a_refused_card_is_not_listed(client: httpx.AsyncClient) -> None:
    headers, _ = await subscriber(client)
    assert await _saved(client, headers, "4000 0000 0000 0002") == []


async def test_another_accounts_card_is_not_found(client: httpx.AsyncClient) -> None:
    a, _ = await subscriber(client)
    b, _ = await subscriber(client)
    [card] = await _saved(client, a, "4242 4242 4242 4242")
    for r in (await client.delete(f"/api/v1/cards/{card['id']}", headers=b),
              await client.post(f"/api/v1/cards/{card['id']}/default", headers=b)):
        assert r.status_code == 404 and r.json()["code"] == "card_not_found"
    assert (await client.get("/api/v1/cards", headers=b)).json() == {"cards": []}
    assert len((await client.get("/api/v1/cards", headers=a)).json()["cards"]) == 1


async def test_auto_topup_settings(client: httpx.AsyncClient) -> None:
    headers, _ = await subscriber(client)
    off = (await client.get("/api/v1/wallet/auto-topup", headers=headers)).json()
    assert (off["enabled"], off["max_per_month"], off["currency"]) == (False, 3, "CNY")
    body = {"enabled": True, "threshold_minor": 2000, "amount_minor": 5000}
    r = await client.put("/api/v1/wallet/auto-topup", headers=headers, json=body)
    assert r.status_code == 422 and r.json()["code"] == "no_saved_card"
    await _saved(client, headers, "4242 4242 4242 4242")
    r = await client.put("/api/v1/wallet/auto-topup", headers=headers,
                         json={**body, "max_per_month": 5})
    assert r.status_code == 200, r.text
    on = r.json()
    assert (on["enabled"], on["threshold_minor"], on["amount_minor"], on["max_per_month"],
            on["card_id"], on["card_last4"]) == (True, 2000, 5000, 5, None, "4242")
    for bad in ({**body, "amount_minor": 0}, {**body, "threshold_minor": -1},
                {**body, "amount_minor": 10.5}, {**body, "max_per_month": 32},
                {**body, "enabled": "yes"}, {**body, "card_id": "not-a-card"}):
        r = await client.put("/api/v1/wallet/auto-topup", headers=headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    r = await client.put("/api/v1/wallet/auto-topup", headers=headers,
                         json={**body, "card_id": "00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 404 and r.json()["code"] == "card_not_found"
    assert (await client.get("/api/v1/wallet/auto-topup")).status_code == 401
