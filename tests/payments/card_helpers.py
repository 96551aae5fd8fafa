"""Saving sandbox cards the way a subscriber does: start a setup, fill in the hosted
"save a card" page (with the CSRF token the page carries), come back, finish."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import httpx

from openmvno.accounts.models import Account
from openmvno.db import unit_of_work
from openmvno.payments import cards
from openmvno.runtime import Runtime

_CSRF = re.compile(r'type="hidden" name="csrf" value="([^"]*)"')

SAVES = "4242 4242 4242 4242"
DECLINES_LATER = "4000 0000 0000 0341"
EXPIRES_NEXT_MONTH = "4000 0000 0000 3121"
REFUSED = "4000 0000 0000 0002"


async def fill_setup_page(
    web: httpx.AsyncClient, url: str, number: str, expiry: str = "12/39", cvc: str = "123"
) -> httpx.Response:
    path = urlsplit(url).path
    page = await web.get(path)
    match = _CSRF.search(page.text)
    assert match is not None, page.text[:500]
    return await web.post(
        f"{path}/card",
        data={"csrf": match.group(1), "card_number": number, "card_expiry": expiry,
              "card_cvc": cvc},
    )


async def save_card(
    rt: Runtime, web: httpx.AsyncClient, account_id: uuid.UUID, number: str = SAVES
) -> cards.CardSetupSession:
    """Start, fill in, come back: the finished setup (``card_id`` once saved)."""
    setup = await cards.start_setup(rt, account_id=account_id)
    r = await fill_setup_page(web, setup.next_action["url"], number)
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"].endswith(f"/account/cards/setup/{setup.id}?setup={setup.id}")
    return await cards.finish_setup(rt, setup_id=setup.id, account_id=account_id)


async def new_account(rt: Runtime, name: str = "Han Meimei") -> uuid.UUID:
    async with unit_of_work(rt.sessions) as s:
        account = Account(name=name, password_hash="not-used", language="zh-CN",
                          phone=f"+86139{uuid.uuid4().int % 10**8:08d}")
        s.add(account)
        await s.flush()
        return account.id
