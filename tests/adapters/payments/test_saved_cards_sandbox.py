"""The sandbox's hosted "save a card" page and its off-session charges: CSRF like the pay
page, no inline script, errors on the page (never the number echoed), a finished setup
takes no second card, and ``charge_saved`` answers per card and key."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from openmvno.adapters.payments import SavedCharge
from openmvno.adapters.payments.registry import payment_provider
from openmvno.runtime import Runtime
from tests.payments.card_helpers import fill_setup_page


async def _setup(rt: Runtime) -> tuple[str, str, str]:
    """(page path, setup id, customer) of a new setup."""
    provider = payment_provider(rt.settings, rt)
    customer = await provider.create_customer(account_id=str(uuid.uuid4()))
    setup_id = str(uuid.uuid4())
    started = await provider.start_card_setup(
        setup_id=setup_id, customer_ref=customer, return_url="http://testserver/back"
    )
    again = await provider.start_card_setup(
        setup_id=setup_id, customer_ref=customer, return_url="http://testserver/back"
    )
    assert again == started  # idempotent per setup id
    return urlsplit(started.next_action["url"]).path, started.reference, customer


async def test_the_page_needs_its_csrf_token_and_has_no_inline_script(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    path, reference, _ = await _setup(rt)
    page = await client.get(path, params={"lang": "zh-CN"})
    assert page.status_code == 200 and "保存银行卡" in page.text
    assert "<script" not in page.text
    assert not re.search(r"<[^>]+\son[a-z]+=", page.text)  # no inline event handlers
    assert "4242 4242 4242 4242" in page.text  # the test cards are listed
    for csrf in ("", "0" * 64):
        r = await client.post(f"{path}/card", data={
            "csrf": csrf, "card_number": "4242424242424242", "card_expiry": "12/39",
            "card_cvc": "123"})
        assert r.status_code == 403 and 'data-test="forbidden"' in r.text
    status = await payment_provider(rt.settings, rt).retrieve_card_setup(reference)
    assert status.status == "requires_action"


@pytest.mark.parametrize(
    ("number", "expiry", "cvc", "field"),
    [("4242 4242 4242 4241", "12/39", "123", "card-number"),
     ("4242 4242 4242 4242", "13/39", "123", "card-expiry"),
     ("4242 4242 4242 4242", "01/20", "123", "card-expiry"),
     ("4242 4242 4242 4242", "12/39", "12", "card-cvc"),
     ("4111 1111 1111 1111", "12/39", "123", "card-number")],
)
async def test_a_wrong_card_is_answered_on_the_page(
    rt: Runtime, client: httpx.AsyncClient, number: str, expiry: str, cvc: str, field: str
) -> None:
    path, reference, _ = await _setup(rt)
    r = await fill_setup_page(client, path, number, expiry, cvc)
    assert r.status_code == 422 and f'data-test="error-{field}"' in r.text
    digits = number.replace(" ", "")
    assert f'value="{number}' not in r.text and f'value="{digits}' not in r.text  # not echoed
    assert digits not in r.text
    status = await payment_provider(rt.settings, rt).retrieve_card_setup(reference)
    assert status.status == "requires_action"


async def test_a_finished_setup_takes_no_second_card(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    path, reference, customer = await _setup(rt)
    assert (await fill_setup_page(client, path, "4242 4242 4242 4242")).status_code == 303
    page = await client.get(path)
    assert page.status_code == 409 and 'data-status="succeeded"' in page.text
    provider = payment_provider(rt.settings, rt)
    done = await provider.retrieve_card_setup(reference)
    assert done.card is not None and done.card.customer_ref == customer
    assert (await client.get("/sandbox/setup/sbs_" + "0" * 24)).status_code == 404
    assert (await client.get("/sandbox/setup/not-a-reference")).status_code == 404
    with pytest.raises(LookupError):
        await provider.retrieve_card_setup("sbs_" + "0" * 24)


async def test_charge_saved_per_card_and_key(rt: Runtime, client: httpx.AsyncClient) -> None:
    provider = payment_provider(rt.settings, rt)
    path, reference, customer = await _setup(rt)
    await fill_setup_page(client, path, "4242 4242 4242 4242")
    good = await provider.retrieve_card_setup(reference)
    path2, reference2, customer2 = await _setup(rt)
    await fill_setup_page(client, path2, "4000 0000 0000 0341")
    poor = await provider.retrieve_card_setup(reference2)
    assert good.card and poor.card
    asked = [
        SavedCharge(good.card.card_ref, customer, 100, "CNY", "k-good", "ok"),
        SavedCharge(poor.card.card_ref, customer2, 100, "CNY", "k-poor"),
        SavedCharge(good.card.card_ref, customer2, 100, "CNY", "k-other-customer"),
        SavedCharge("sbcard_unknown", customer, 100, "CNY", "k-unknown"),
        SavedCharge(good.card.card_ref, customer, 999, "CNY", "k-good"),  # the same key again
    ]
    answers = await provider.charge_saved(asked)
    assert [(a.status, a.decline_code) for a in answers] == [
        ("succeeded", None), ("declined", "insufficient_funds"), ("declined", "card_not_found"),
        ("declined", "card_not_found"), ("succeeded", None)]
    assert answers[0].reference == answers[4].reference
    paid = await provider.retrieve(str(answers[0].reference))
    assert (paid.status, paid.amount_minor) == ("succeeded", 100)  # never the second amount
    await provider.detach_card(good.card.card_ref)
    [after] = await provider.charge_saved(
        [SavedCharge(good.card.card_ref, customer, 100, "CNY", "k-after")])
    assert (after.status, after.decline_code) == ("declined", "card_removed")
