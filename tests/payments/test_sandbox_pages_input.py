"""The sandbox pay pages answer odd input on the page itself (the card form with its
error, the 403 or 404 page), never with a JSON problem or a 500."""

from __future__ import annotations

import httpx
import pytest

from openmvno.runtime import Runtime
from tests.adapters.payments.sandbox_helpers import submit
from tests.payments.refund_helpers import plan_order, sandbox_buyer, start_payment


@pytest.mark.parametrize("path", ["/sandbox/pay/%00", "/sandbox/pay/sbx_" + "f" * 300,
                                  "/sandbox/pay/a%00b/scan"])
async def test_a_reference_that_cannot_be_ours_is_the_404_page(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path + "?lang=en")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "This payment link is not valid." in r.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("card_number", "4" * 41, "The card number is not valid."),
     ("card_expiry", "12/39" + " " * 20, "Give the expiry date as MM/YY."),
     ("card_cvc", "1234567", "The security code (CVC) is 3 digits."),
     ("card_cvc", "12\u202e3", "The security code (CVC) is 3 digits.")],
)
async def test_an_over_long_or_odd_card_field_is_explained_on_the_card_form(
    client: httpx.AsyncClient, rt: Runtime, field: str, value: str, message: str
) -> None:
    buyer = await sandbox_buyer(client, rt)
    url = await start_payment(client, buyer, await plan_order(client, buyer))
    card = {"card_number": "4242424242424242", "card_expiry": "12/39", "card_cvc": "123"}
    r = await submit(client, url + "?lang=en", "card", {**card, field: value})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    assert message in r.text


async def test_an_over_long_token_is_the_403_page(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    buyer = await sandbox_buyer(client, rt)
    url = await start_payment(client, buyer, await plan_order(client, buyer))
    r = await client.post(url.removeprefix("http://testserver") + "/card?lang=en",
                          data={"csrf": "x" * 5000, "card_number": "4242424242424242"})
    assert r.status_code == 403
    assert "Nothing was paid." in r.text
