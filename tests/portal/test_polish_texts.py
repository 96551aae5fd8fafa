"""Texts a new subscriber tripped on: half-English messages, a cancelling message when
paying, "1 attempts", raw region codes, half-width colons in Chinese, method codes."""

from __future__ import annotations

import re

import httpx
import pytest

from openmvno.accounts import codes
from openmvno.accounts import service as accounts
from openmvno.accounts.models import Account, Channel, CodePurpose
from openmvno.catalog import service as catalog
from openmvno.catalog.schemas import PlanIn
from openmvno.db import unit_of_work
from openmvno.errors import InvalidInput
from openmvno.i18n import translate
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind
from openmvno.runtime import Runtime
from tests.conftest import register_and_login
from tests.orders.helpers import fund_wallet, order, pay, subscriber
from tests.portal.helpers import csrf_of, text_of
from tests.portal.test_shop_pages import _give_line, _seed, _subscriber

HALF_WIDTH_COLON_AFTER_CJK = re.compile(r"[\u3400-\u9fff\uff09\u3001\u3002]\s*:")


@pytest.mark.parametrize(
    ("channel", "zh", "en"),
    [(Channel.email, "该账户没有登记电子邮箱", "no email address on file"),
     (Channel.sms, "该账户没有登记手机号码", "no phone number on file")],
)
def test_a_missing_contact_is_named_in_the_readers_language(
    channel: Channel, zh: str, en: str
) -> None:
    account = Account(name="Li Lei", password_hash="!", phone=None, email=None)
    with pytest.raises(InvalidInput) as err:
        codes.target_for(account, channel)
    chinese = translate("zh-CN", err.value.message, **err.value.params)
    assert zh in chinese and not re.search(r"[A-Za-z]", chinese)
    assert en in translate("en", err.value.message, **err.value.params)


async def test_one_attempt_left_is_singular(client: httpx.AsyncClient, rt: Runtime) -> None:
    """Wrong codes where the count is shown (a caller check; login forms say only
    "invalid", never how many tries are left)."""
    headers = await register_and_login(client)
    async with unit_of_work(rt.sessions) as session:
        account = await accounts.get_by_login(session, rt, headers["X-Phone"])
        assert account is not None
        await codes.issue(session, rt, account=account, purpose=CodePurpose.caller_check,
                          channel=Channel.sms)
        await session.flush()
        sent = await notifications.list_messages(session, kinds=[OutboxKind.sms])
        (check,) = [m for m in sent if "verifying you" in m.body]
        code = re.findall(r"\b\d{6}\b", check.body)[0]
        wrong = "000000" if code != "000000" else "111111"
        said = []
        for _ in range(rt.settings.otp_max_attempts - 1):
            with pytest.raises(InvalidInput) as err:
                await codes.check(session, rt, account=account,
                                  purpose=CodePurpose.caller_check, code=wrong)
            said.append(translate("en", err.value.message, **err.value.params))
    assert said[-2:] == ["The code is wrong; 2 attempts left.",
                         "The code is wrong; 1 attempt left."]
    assert translate("zh-CN", "The code is wrong; 1 attempt left.") == "验证码错误，还可尝试 1 次。"


async def test_paying_a_fulfilled_order_says_it_is_paid_not_that_it_cannot_be_cancelled(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    headers, account_id = await subscriber(client)
    await fund_wallet(rt, account_id, 5900)
    created = await order(client, headers, {"kind": "new_line", "plan_code": "S-MIX"})
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    assert (await pay(client, headers, oid, "wallet")).status_code in (200, 201)
    for lang, said, never in (("zh-CN", "无需再付款", "无法取消"),
                              ("en", "nothing left to pay", "cancelled")):
        again = await pay(client, {**headers, "Accept-Language": lang}, oid, "wallet")
        assert again.status_code == 409
        assert said in again.json()["detail"] and never not in again.json()["detail"]


async def test_a_disabled_method_is_named_not_coded(client: httpx.AsyncClient, rt: Runtime) -> None:
    rt.settings.payment_methods = ["card", "wallet"]
    headers, _ = await subscriber(client)
    created = (await order(client, headers, {"kind": "topup", "amount_minor": 2000})).json()
    for lang, name in (("zh-CN", "支付宝"), ("en", "Alipay")):
        refused = await pay(client, {**headers, "Accept-Language": lang}, created["id"], "alipay")
        assert refused.status_code == 422
        assert name in refused.json()["detail"] and "alipay" not in refused.json()["detail"]


async def test_roaming_regions_are_named_in_the_visitors_language(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    async with unit_of_work(rt.sessions) as session:
        await catalog.create_plan(
            session,
            PlanIn(code="R-GBA", kind="data", name_zh="大湾区漫游", name_en="Greater Bay roaming",  # type: ignore[arg-type]
                   price_minor=3000, validity_days=30, data_gb=5,  # type: ignore[call-arg]
                   roaming_zones=["CN", "HK", "MO", "TW"]),
            actor=None, default_currency="CNY",
        )
    zh = await client.get("/plans?lang=zh-CN")
    roaming = re.search(r'data-test="plan-roaming">([^<]*)<', zh.text)
    assert roaming and roaming.group(1) == "中国、中国香港、中国澳门和中国台湾"
    en = await client.get("/plans?lang=en")
    roaming = re.search(r'data-test="plan-roaming">([^<]*)<', en.text)
    assert roaming and roaming.group(1) == "China, Hong Kong, Macao, and Taiwan"


async def test_chinese_pages_use_full_width_colons(client: httpx.AsyncClient, rt: Runtime) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138961")
    line_id, _ = await _give_line(rt, login)
    pages = {
        "account": await client.get("/account?lang=zh-CN"),
        "checkout": await client.get(f"/buy?plan=S-MIX&line={line_id}&lang=zh-CN"),
    }
    confirm = pages["checkout"].text
    r = await client.post("/buy", data={
        **dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"',
                          confirm.split('action="/buy"', 1)[1].split("</form>", 1)[0])),
        "method": "card"})
    assert r.status_code == 303
    pages["orders"] = await client.get("/orders?lang=zh-CN")
    for name, page in pages.items():
        text = text_of(page.text)
        assert not HALF_WIDTH_COLON_AFTER_CJK.search(text), (name, text)
    assert "钱包余额：" in text_of(pages["account"].text)
    assert "套餐续费：全能套餐" in text_of(pages["checkout"].text)
    assert "套餐续费：全能套餐" in text_of(pages["orders"].text)
    assert csrf_of(pages["account"].text)
