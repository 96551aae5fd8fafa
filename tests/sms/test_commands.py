"""SMS short-code commands (through the channel, replies read from the outbox)."""

from __future__ import annotations

import httpx
import pytest

from openmvno.channels.sms.commands import Incoming, handle, handle_many, parse
from openmvno.db import unit_of_work
from openmvno.notifications import preferences
from openmvno.renewals import service as renewals
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.orders.helpers import wallet_minor
from tests.sms.helpers import person, replies_to
from tests.test_reads import counting


@pytest.mark.parametrize(("text", "name", "arg"), [
    ("BAL", "balance", ""), ("bal", "balance", ""), (" Ｂａｌ！", "balance", ""),
    ("１２３", "balance", ""), ("余额", "balance", ""), ("查询。", "balance", ""),
    ("help", "help", ""), ("帮助", "help", ""), ("PLANS", "plans", ""), ("套餐", "plans", ""),
    ("buy m30", "buy", "M30"), ("ＢＵＹ　Ｍ３０", "buy", "M30"), ("BUY-M30", "buy", "M30"),
    ("buym30", "buy", "M30"), ("yes", "yes", ""), ("是", "yes", ""), ("Yes!", "yes", ""),
    ("auto on", "auto", "ON"), ("AUTO OFF.", "auto", "OFF"), ("STOP", "stop", ""),
    ("td", "stop", ""), ("hello there", "help", ""), ("", "help", ""), ("???", "help", ""),
])
def test_parse_ignores_case_width_spaces_and_punctuation(text: str, name: str, arg: str) -> None:
    command = parse(text)
    assert (command.name, command.argument) == (name, arg)


async def test_bal_replies_plan_data_minutes_sms_wallet_and_expiry_in_english(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    p = await person(client, rt)
    reply = await handle(rt, sender=p.msisdn, text="BAL", channel="test")
    assert reply is not None and reply.to == p.msisdn
    body = reply.body
    assert "Enjoy 30 days" in body and "10 GB" in body and "100 min" in body
    assert "100 SMS" in body and "¥150.00" in body and "valid until" in body
    # The same moment in the API (the portal reads the same service): the same figures.
    api = (await client.get(f"/api/v1/lines/{p.line.id}/balance",
                            headers={**p.headers, "Accept-Language": "en"})).json()
    assert api["wallet"]["balance_minor"] == 15000 and api["wallet"]["balance_text"] in body
    assert api["expires_at_text"] in body and api["plan"]["name"] in body
    for total in api["totals"]:
        assert total["remaining_text"] in body


async def test_bal_in_chinese_for_a_chinese_subscriber(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    p = await person(client, rt, language="zh-CN")
    reply = await handle(rt, sender=p.msisdn, text="余额", channel="test")
    assert reply is not None
    assert "畅享30天" in reply.body and "流量" in reply.body and "¥150.00" in reply.body


async def test_unknown_sender_gets_a_polite_bilingual_reply(rt: Runtime) -> None:
    reply = await handle(rt, sender="+8613912345678", text="BAL", channel="test")
    assert reply is not None
    assert "尚未" in reply.body and "not registered" in reply.body


async def test_anything_else_gets_the_help_text(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None)
    reply = await handle(rt, sender=p.msisdn, text="what is this", channel="test")
    assert reply is not None and "BAL" in reply.body and "PLANS" in reply.body


async def test_plans_lists_codes_prices_and_validity(rt: Runtime, client: httpx.AsyncClient
                                                     ) -> None:
    p = await person(client, rt, plan=None, language="zh-CN")
    reply = await handle(rt, sender=p.msisdn, text="套餐", channel="test")
    assert reply is not None and "M30" in reply.body and "¥50.00" in reply.body
    assert "30天" in reply.body


async def test_buy_then_yes_pays_from_the_wallet_once(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    p = await person(client, rt, plan=None)
    ask = await handle(rt, sender=p.msisdn, text="BUY D7", channel="test")
    assert ask is not None
    assert "¥15.00" in ask.body and "7 days" in ask.body and "YES" in ask.body
    assert await wallet_minor(rt, p.account_id) == 20000  # nothing paid before YES
    done = await handle(rt, sender=p.msisdn, text="yes", channel="test")
    assert done is not None and done.body.startswith("Done")
    assert await wallet_minor(rt, p.account_id) == 18500
    again = await handle(rt, sender=p.msisdn, text="YES", channel="test")
    assert again is not None and "Nothing to confirm" in again.body
    assert await wallet_minor(rt, p.account_id) == 18500
    bal = (await client.get(f"/api/v1/lines/{p.line.id}/balance", headers=p.headers)).json()
    assert bal["plan"]["code"] == "D7"


async def test_yes_after_five_minutes_buys_nothing(
    rt: Runtime, client: httpx.AsyncClient, frozen: FrozenClock
) -> None:
    p = await person(client, rt, plan=None)
    await handle(rt, sender=p.msisdn, text="BUY D7", channel="test")
    frozen.advance(minutes=5, seconds=1)
    late = await handle(rt, sender=p.msisdn, text="YES", channel="test")
    assert late is not None and "expired" in late.body
    assert await wallet_minor(rt, p.account_id) == 20000


async def test_buy_with_a_short_wallet_says_why(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None, wallet=1000)
    await handle(rt, sender=p.msisdn, text="BUY M30", channel="test")
    reply = await handle(rt, sender=p.msisdn, text="YES", channel="test")
    assert reply is not None and reply.body.startswith("Not bought")
    assert await wallet_minor(rt, p.account_id) == 1000


async def test_buy_an_unknown_code(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None)
    reply = await handle(rt, sender=p.msisdn, text="BUY NOPE", channel="test")
    assert reply is not None and "no plan NOPE" in reply.body


async def test_auto_on_and_off(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt)
    on = await handle(rt, sender=p.msisdn, text="auto on", channel="test")
    assert on is not None and "on" in on.body
    async with unit_of_work(rt.sessions) as s:
        view = await renewals.auto_renew_view(s, account_id=p.account_id, line_id=p.line.id)
        assert view.enabled
    off = await handle(rt, sender=p.msisdn, text="AUTO OFF", channel="test")
    assert off is not None and "off" in off.body
    async with unit_of_work(rt.sessions) as s:
        view = await renewals.auto_renew_view(s, account_id=p.account_id, line_id=p.line.id)
        assert not view.enabled


async def test_stop_opts_out_of_marketing(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None, language="zh-CN")
    async with unit_of_work(rt.sessions) as s:
        await preferences.set_preferences(s, account_id=p.account_id, sms=None, email=None,
                                          marketing=True)
    reply = await handle(rt, sender=p.msisdn, text="TD", channel="test")
    assert reply is not None
    async with unit_of_work(rt.sessions) as s:
        prefs = await preferences.get_preferences(s, account_id=p.account_id)
    assert prefs.marketing is False and prefs.sms is True


async def test_a_sender_over_the_limit_is_told_once_then_ignored(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    rt.settings = rt.settings.model_copy(update={"sms_commands_per_hour": 3})
    p = await person(client, rt, plan=None)
    for _ in range(3):
        assert await handle(rt, sender=p.msisdn, text="HELP", channel="test") is not None
    told = await handle(rt, sender=p.msisdn, text="HELP", channel="test")
    assert told is not None and "Too many" in told.body
    assert await handle(rt, sender=p.msisdn, text="HELP", channel="test") is None


async def test_a_replayed_message_runs_once(rt: Runtime, client: httpx.AsyncClient) -> None:
    p = await person(client, rt, plan=None)
    first = await handle(rt, sender=p.msisdn, text="BAL", channel="test", external_id="m-1")
    assert first is not None
    assert await handle(rt, sender=p.msisdn, text="BAL", channel="test", external_id="m-1") is None


async def test_a_batch_of_messages_is_answered_as_one_at_a_time_would_be(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """``openmvno smpp`` hands the messages that arrive together to ``handle_many`` (one
    transaction): each gets the reply ``handle`` gives it, a replay in the batch runs once."""
    english = await person(client, rt)
    chinese = await person(client, rt, language="zh-CN", seed=False)
    stranger = "+8613912345678"
    batch = [
        Incoming(english.msisdn, "BAL", "test", "b-1"),
        Incoming(chinese.msisdn, "余额", "test", "b-2"),
        Incoming(stranger, "BAL", "test", "b-3"),
        Incoming(english.msisdn, "BAL", "test", "b-1"),  # the gateway sent it twice
        Incoming(chinese.msisdn, "HELP", "test", "b-4"),
    ]
    replies = await handle_many(rt, batch)
    assert replies[3] is None  # the replay
    alone = [await handle(rt, sender=m.sender, text=m.text, channel="test", external_id=f"a-{i}")
             for i, m in enumerate(batch) if i != 3]
    got = [r for i, r in enumerate(replies) if i != 3]
    assert all(r is not None for r in got)
    assert [(r.to, r.body) for r in got if r] == [(r.to, r.body) for r in alone if r]
    assert "¥150.00" in (got[0].body if got[0] else "")
    assert "畅享30天" in (got[1].body if got[1] else "")
    assert "not registered" in (got[2].body if got[2] else "")


async def test_a_batch_of_bal_takes_the_same_statements_for_two_senders_or_eight(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The senders, the replay guard, the rate limit, the balances and the replies are
    each read or written for the whole batch at once."""
    people = [await person(client, rt, language="zh-CN" if i % 2 else "en", seed=i == 0)
              for i in range(8)]

    async def statements(n: int, tag: str) -> int:
        batch = [Incoming(p.msisdn, "BAL", "test", f"{tag}-{i}") for i, p in enumerate(people[:n])]
        with counting(rt) as seen:
            replies = await handle_many(rt, batch)
        assert all(r is not None and r.body.startswith(p.msisdn)  # each its own balance
                   for r, p in zip(replies, people, strict=False))
        return len(seen.statements)

    assert await statements(2, "two") == await statements(8, "eight")


async def test_over_the_limit_within_one_batch_is_told_once_then_ignored(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    rt.settings = rt.settings.model_copy(update={"sms_commands_per_hour": 3})
    p = await person(client, rt, plan=None)
    replies = await handle_many(rt, [Incoming(p.msisdn, "HELP", "test", f"l-{i}") for i in range(5)])
    assert [r is not None for r in replies] == [True, True, True, True, False]
    assert replies[3] is not None and "Too many" in replies[3].body
    assert await handle(rt, sender=p.msisdn, text="HELP", channel="test") is None
    queued = await replies_to(rt, p.msisdn)
    assert queued[-4:] == [r.body for r in replies if r is not None]


async def test_bal_after_buy_and_yes_in_the_same_batch_shows_what_was_bought(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    p = await person(client, rt, plan=None)
    replies = await handle_many(rt, [Incoming(p.msisdn, "BUY D7", "test", "c-1"),
                                     Incoming(p.msisdn, "YES", "test", "c-2"),
                                     Incoming(p.msisdn, "BAL", "test", "c-3")])
    assert replies[1] is not None and replies[1].body.startswith("Done")
    assert replies[2] is not None and "¥185.00" in replies[2].body  # 200.00 - 15.00
    assert await wallet_minor(rt, p.account_id) == 18500
    assert (await replies_to(rt, p.msisdn))[-3:] == [r.body for r in replies if r is not None]
