"""USSD sessions through the HTTP callback (Africa's Talking convention), every path in
zh-CN and en; every screen fits 182 characters."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pydantic import SecretStr

from openmvno.db import unit_of_work
from openmvno.renewals import service as renewals
from openmvno.runtime import Runtime
from tests.orders.helpers import wallet_minor
from tests.sms.helpers import Person, person, replies_to

SECRET = "ussd-shared-secret-0123456789"


@pytest.fixture
def ussd_rt(rt: Runtime) -> Runtime:
    rt.settings = rt.settings.model_copy(update={"ussd_secret": SecretStr(SECRET)})
    return rt


class Dialer:
    def __init__(self, client: httpx.AsyncClient, phone: str) -> None:
        self.client, self.phone = client, phone
        self.session = uuid.uuid4().hex
        self.inputs: list[str] = []
        self.screens: list[str] = []

    async def dial(self, *inputs: str) -> str:
        self.inputs += inputs
        r = await self.client.post("/ussd", data={
            "sessionId": self.session, "serviceCode": "*123#", "phoneNumber": self.phone,
            "text": "*".join(self.inputs)}, headers={"X-USSD-Secret": SECRET})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        screen = r.text
        assert screen.startswith(("CON ", "END ")), screen
        assert len(screen) <= 182, (len(screen), screen)
        self.screens.append(screen)
        return screen


LANGS = ["en", "zh-CN"]
WORDS = {"en": {"balance": "Balance", "invalid": "Invalid choice", "done": "Done",
                "sent": "top-up link", "on": "now on", "off": "now off", "short": "Not bought"},
         "zh-CN": {"balance": "查询余额", "invalid": "选择无效", "done": "购买成功",
                   "sent": "充值链接", "on": "已开启", "off": "已关闭", "short": "未购买"}}


async def _person(client: httpx.AsyncClient, rt: Runtime, lang: str, **kw: object) -> Person:
    return await person(client, rt, language=lang, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", LANGS)
async def test_home_and_balance_and_back(ussd_rt: Runtime, client: httpx.AsyncClient,
                                         lang: str) -> None:
    p = await _person(client, ussd_rt, lang)
    d = Dialer(client, p.msisdn)
    home = await d.dial()
    assert home.startswith("CON ") and WORDS[lang]["balance"] in home
    bal = await d.dial("1")
    api = (await client.get(f"/api/v1/lines/{p.line.id}/balance",
                            headers={**p.headers, "Accept-Language": lang})).json()
    assert api["wallet"]["balance_text"] in bal and api["expires_at_text"] in bal
    for total in api["totals"]:
        assert total["remaining_text"] in bal
    assert (await d.dial("0")) == home  # back
    await d.dial("1")
    assert (await d.dial("00")) == home  # home


@pytest.mark.parametrize("lang", LANGS)
async def test_buy_pick_confirm_changes_the_balance(ussd_rt: Runtime, client: httpx.AsyncClient,
                                                    lang: str) -> None:
    p = await _person(client, ussd_rt, lang, plan=None)
    d = Dialer(client, p.msisdn)
    await d.dial()
    plans = await d.dial("2")
    assert "M30" not in plans and "¥50.00" in plans  # names and prices, numbered
    confirm = await d.dial("2")  # the second plan listed
    assert confirm.startswith("CON ") and "¥" in confirm
    done = await d.dial("1")
    assert done.startswith("END ") and WORDS[lang]["done"] in done
    spent = 20000 - await wallet_minor(ussd_rt, p.account_id)
    assert spent > 0
    # The gateway retrying the same request buys nothing twice.
    r = await client.post("/ussd", data={"sessionId": d.session, "serviceCode": "*123#",
                                         "phoneNumber": p.msisdn, "text": "2*2*1"},
                          headers={"X-USSD-Secret": SECRET})
    assert r.status_code == 200 and r.text.startswith("END ")
    assert 20000 - await wallet_minor(ussd_rt, p.account_id) == spent
    bal = await Dialer(client, p.msisdn).dial("1")
    assert str(await _wallet_text(client, p, lang)) in bal


async def _wallet_text(client: httpx.AsyncClient, p: Person, lang: str) -> str:
    api = (await client.get(f"/api/v1/lines/{p.line.id}/balance",
                            headers={**p.headers, "Accept-Language": lang})).json()
    return str(api["wallet"]["balance_text"])


@pytest.mark.parametrize("lang", LANGS)
async def test_buy_with_a_short_wallet_ends_with_the_reason(
    ussd_rt: Runtime, client: httpx.AsyncClient, lang: str
) -> None:
    p = await _person(client, ussd_rt, lang, plan=None, wallet=100)
    d = Dialer(client, p.msisdn)
    await d.dial()
    await d.dial("2")
    await d.dial("1")
    end = await d.dial("1")
    assert end.startswith("END ") and WORDS[lang]["short"] in end
    assert await wallet_minor(ussd_rt, p.account_id) == 100


@pytest.mark.parametrize("lang", LANGS)
async def test_top_up_link_by_sms(ussd_rt: Runtime, client: httpx.AsyncClient, lang: str) -> None:
    p = await _person(client, ussd_rt, lang, plan=None)
    d = Dialer(client, p.msisdn)
    await d.dial()
    end = await d.dial("3")
    assert end.startswith("END ") and WORDS[lang]["sent"] in end
    sms = (await replies_to(ussd_rt, p.msisdn))[-1]
    assert "/topup?msisdn=%2B" in sms and p.msisdn.lstrip("+") in sms


@pytest.mark.parametrize("lang", LANGS)
async def test_auto_renew_on_and_off(ussd_rt: Runtime, client: httpx.AsyncClient, lang: str
                                     ) -> None:
    p = await _person(client, ussd_rt, lang)
    d = Dialer(client, p.msisdn)
    await d.dial()
    await d.dial("4")
    on = await d.dial("1")
    assert on.startswith("END ") and WORDS[lang]["on"] in on
    async with unit_of_work(ussd_rt.sessions) as s:
        assert (await renewals.auto_renew_view(s, account_id=p.account_id,
                                               line_id=p.line.id)).enabled
    d2 = Dialer(client, p.msisdn)
    await d2.dial()
    await d2.dial("4")
    off = await d2.dial("2")
    assert WORDS[lang]["off"] in off


@pytest.mark.parametrize("lang", LANGS)
async def test_a_bad_choice_explains_and_shows_the_menu_again(
    ussd_rt: Runtime, client: httpx.AsyncClient, lang: str
) -> None:
    p = await _person(client, ussd_rt, lang)
    d = Dialer(client, p.msisdn)
    home = await d.dial()
    bad = await d.dial("9")
    assert bad.startswith("CON ") and WORDS[lang]["invalid"] in bad
    assert home[4:] in bad
    await d.dial("2")
    bad_plan = await d.dial("77")
    assert WORDS[lang]["invalid"] in bad_plan
    assert (await d.dial("0")).startswith("CON ")


async def test_unknown_number_gets_a_bilingual_end(ussd_rt: Runtime, client: httpx.AsyncClient
                                                   ) -> None:
    screen = await Dialer(client, "+8613912340000").dial()
    assert screen.startswith("END ") and "未登记" in screen and "not registered" in screen


async def test_only_the_aggregator_may_call(ussd_rt: Runtime, client: httpx.AsyncClient) -> None:
    data = {"sessionId": "s1", "serviceCode": "*123#", "phoneNumber": "+8613800000000",
            "text": ""}
    assert (await client.post("/ussd", data=data)).status_code == 403
    wrong = await client.post("/ussd", data=data, headers={"X-USSD-Secret": "nope"})
    assert wrong.status_code == 403
    ussd_rt.settings = ussd_rt.settings.model_copy(update={
        "ussd_secret": SecretStr(""), "ussd_allowed_addresses": ["127.0.0.0/8"]})
    # httpx's ASGI transport calls from 127.0.0.1: allow-listed by address.
    assert (await client.post("/ussd", data=data)).status_code == 200


async def test_every_screen_fits_182_characters_with_long_plan_names(
    ussd_rt: Runtime, client: httpx.AsyncClient
) -> None:
    from sqlalchemy import update

    from openmvno.catalog.models import Plan

    for lang in LANGS:
        p = await _person(client, ussd_rt, lang, seed=lang == "en")
        async with unit_of_work(ussd_rt.sessions) as s:
            await s.execute(update(Plan).values(name_en="A very long plan name " * 4,
                                                name_zh="非常长的套餐名称" * 6))
        for path in ([], ["1"], ["2"], ["2", "1"], ["4"], ["9"], ["2", "9"]):
            d = Dialer(client, p.msisdn)
            await d.dial(*path)
