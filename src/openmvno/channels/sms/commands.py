"""Short-code SMS commands: parse a text, call the self-care services, queue the reply.

``BAL``/``123``/``余额``/``查询`` balance; ``HELP``/``帮助``; ``PLANS``/``套餐``;
``BUY <code>`` then ``YES``/``是`` within ``sms_confirm_minutes``; ``AUTO ON|OFF``;
``STOP``/``TD`` marketing opt-out. Case, full-width letters and digits, stray spaces and
punctuation do not matter; anything else gets the help text. Replies are in the
subscriber's language and go back through the outbox (SMPP or any SMS adapter).
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.formatting import formatter
from openmvno.i18n import N_, translate
from openmvno.ledger.models import BucketKind
from openmvno.ledger.service import LineBalance
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime
from openmvno.selfcare import service as selfcare
from openmvno.selfcare.service import Subscriber

HELP = N_("Text BAL for your balance, PLANS for plans, BUY <code> to buy a plan from your "
          "wallet, AUTO ON or AUTO OFF for auto-renew, STOP to stop offers.")
UNKNOWN_SENDER = ("您好，本号码尚未在{operator}登记，请访问 {url} 注册。"
                  " Hello, this number is not registered with {operator}; sign up at {url}.")
KEYWORDS = {
    "BAL": "balance", "123": "balance", "余额": "balance", "查询": "balance",
    "HELP": "help", "帮助": "help", "?": "help",
    "PLANS": "plans", "套餐": "plans",
    "BUY": "buy", "购买": "buy",
    "YES": "yes", "Y": "yes", "是": "yes",
    "AUTO": "auto", "自动续费": "auto",
    "STOP": "stop", "TD": "stop", "退订": "stop",
}
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


def parse(text: str) -> Command:
    """The command in a text (NFKC folds full-width letters and digits; punctuation and
    extra spaces are dropped; case does not matter)."""
    folded = unicodedata.normalize("NFKC", text).upper()
    if folded.strip() in ("?", "？"):
        return Command("help")
    words = _PUNCT.sub(" ", folded).split()
    if not words:
        return Command("help")
    head, rest = words[0], words[1:]
    name = KEYWORDS.get(head)
    if name is None:
        # "BUYM30", "AUTOON": a keyword run together with its argument
        for keyword in ("BUY", "AUTO"):
            if head.startswith(keyword) and len(head) > len(keyword):
                return Command(KEYWORDS[keyword], " ".join([head[len(keyword):], *rest]))
        return Command("help")
    return Command(name, " ".join(rest))


@dataclass(frozen=True)
class Reply:
    to: str
    body: str


async def handle(rt: Runtime, *, sender: str, text: str, channel: str,
                 external_id: str | None = None) -> Reply | None:
    """Run one inbound SMS in its own transaction and queue the reply; None when this
    message was already taken (a replay) or the sender is over the limit and was told."""
    return (await handle_many(rt, [Incoming(sender, text, channel, external_id)]))[0]


@dataclass(frozen=True)
class Incoming:
    sender: str
    text: str
    channel: str
    external_id: str | None = None


READ_ONLY = frozenset({"balance", "plans", "help"})
"""Commands that change nothing: a batch may read their answers together."""
RATE_WINDOW = timedelta(hours=1)


async def handle_many(rt: Runtime, messages: Sequence[Incoming]) -> list[Reply | None]:
    """Run a batch of inbound SMS in one transaction (one commit for all, the replies
    queued in the outbox in it), answering each as if they came one at a time: a fixed
    number of statements for the batch (the senders, the replay guard, the rate limit,
    the balances of every ``BAL``, the replies), plus those of each command that changes
    something (``BUY``, ``YES``, ``AUTO``, ``STOP``; an account with one of those in the
    batch has its ``BAL`` read in turn, after it). Should the batch fail, nothing of it
    is kept and it raises (the caller runs them one at a time)."""
    async with unit_of_work(rt.sessions) as session:
        subs = await selfcare.subscribers_for(session, rt, [m.sender for m in messages])
        known = [(subs[m.sender], m, _reply_to(rt, subs[m.sender], m.sender)) for m in messages]
        taken = await selfcare.take_inbound_many(session, [selfcare.InboundRow(
            m.channel, m.external_id or uuid.uuid4().hex, to,
            sub.account.id if sub else None) for sub, m, to in known])
        todo = [(i, sub, m, to, inbound)
                for i, ((sub, m, to), inbound) in enumerate(zip(known, taken, strict=True))
                if inbound is not None]
        keys = [ratelimit.digest(to) for _, _, _, to, _ in todo]
        waits = await ratelimit.hit_many(session, scope="sms_command", keys=keys,
                                         limit=rt.settings.sms_commands_per_hour,
                                         window=RATE_WINDOW)
        # Over the limit: told once per window, then silence (no reply loops with a machine).
        told = iter(await ratelimit.hit_many(
            session, scope="sms_command_refused", limit=1, window=RATE_WINDOW,
            keys=[k for k, wait in zip(keys, waits, strict=True) if wait]))
        commands = [parse(m.text) for _, _, m, _, _ in todo]
        changing = {sub.account.id for (_, sub, _, _, _), c, wait
                    in zip(todo, commands, waits, strict=True)
                    if sub is not None and not wait and c.name not in READ_ONLY}
        balances = await selfcare.balances(session, rt, [
            sub for (_, sub, _, _, _), c, wait in zip(todo, commands, waits, strict=True)
            if sub is not None and not wait and c.name == "balance"
            and sub.account.id not in changing])
        results: list[Reply | None] = [None] * len(messages)
        replies = []
        for (i, sub, _, to, inbound), command, wait in zip(todo, commands, waits, strict=True):
            if wait:
                if next(told):
                    continue
                language = sub.language if sub else rt.settings.default_language
                body = translate(language, "Too many messages; please try again in {minutes} "
                                 "minutes.", minutes=math.ceil(wait / 60))
            elif sub is None:
                body = UNKNOWN_SENDER.format(operator=rt.settings.operator_name,
                                             url=rt.settings.public_url)
            elif command.name == "balance" and sub.line is not None and sub.line.id in balances:
                body = balance_text(sub.language, balances[sub.line.id])
            else:
                body = await answer(session, rt, sub, command, key=f"sms:{inbound}")
            replies.append(selfcare.ReplyOut(to, body, f"sms-reply:{inbound}",
                                             sub.account.id if sub else None))
            results[i] = Reply(to, body)
        await selfcare.reply_many(session, replies)
        return results


def _reply_to(rt: Runtime, sub: Subscriber | None, sender: str) -> str:
    return sub.msisdn if sub else (selfcare.phone(rt, sender) or sender)


async def answer(session: AsyncSession, rt: Runtime, sub: Subscriber, command: Command, *,
                 key: str) -> str:
    """The reply text to one command."""
    lang = sub.language
    if command.name == "balance":
        if sub.line is None:
            return translate(lang, "This number has no line with us yet.")
        return balance_text(lang, await selfcare.balance(session, rt, sub))
    if command.name == "plans":
        return plans_text(lang, await selfcare.plans_for_sale(session))
    if command.name == "buy":
        code = command.argument.replace(" ", "")
        if not code:
            return translate(lang, "Text BUY and a plan code, e.g. BUY {code}. Text PLANS for "
                             "the list.", code=await _example_code(session))
        plan = await selfcare.plan_by_code(session, code)
        if plan is None:
            return translate(lang, "There is no plan {code}. Text PLANS for the list.",
                             code=code)
        if sub.line is None:
            return translate(lang, "This number has no line with us yet.")
        await selfcare.ask_to_buy(session, rt, sub, plan)
        fmt = formatter(lang)
        wallet = await selfcare.balance(session, rt, sub)
        return translate(
            lang, "Buy {plan} for {price}, valid {days} days, from your wallet ({wallet})? "
            "Reply YES within {minutes} minutes.", plan=plan.name(lang),
            price=fmt.money(plan.price_minor, plan.currency), days=plan.validity_days,
            wallet=wallet.wallet.text, minutes=rt.settings.sms_confirm_minutes)
    if command.name == "yes":
        pending = await selfcare.take_confirmation(session, sub)
        if pending is None:
            return translate(lang, "Nothing to confirm (or it expired). Text BUY and a plan "
                             "code first.")
        plan = await selfcare.plan_by_code(session, pending.plan_code)
        if plan is None:
            return translate(lang, "There is no plan {code}. Text PLANS for the list.",
                             code=pending.plan_code)
        bought = await selfcare.buy(session, rt, sub, plan, key=f"sms-buy:{pending.id}")
        if bought.error is not None:
            return translate(lang, "Not bought: {reason}", reason=translate(
                lang, bought.error.message, **bought.error.params))
        assert bought.balance is not None
        return translate(lang, "Done: {plan} is yours, valid until {expiry}. Wallet: {wallet}.",
                         plan=plan.name(lang), expiry=bought.balance.expires_at_text,
                         wallet=bought.balance.wallet.text)
    if command.name == "auto":
        wanted = command.argument.replace(" ", "")
        if wanted not in ("ON", "OFF", "开", "关", "开启", "关闭"):
            return translate(lang, "Text AUTO ON or AUTO OFF.")
        if sub.line is None:
            return translate(lang, "This number has no line with us yet.")
        from openmvno.errors import DomainError

        try:
            enabled = await selfcare.auto_renew(session, rt, sub,
                                                wanted in ("ON", "开", "开启"))
        except DomainError as exc:
            return translate(lang, exc.message, **exc.params)
        return translate(lang, "Auto-renew is on for {number}." if enabled
                         else "Auto-renew is off for {number}.", number=sub.line.msisdn)
    if command.name == "stop":
        await selfcare.stop_marketing(session, sub)
        return translate(lang, "You will get no more offers. Notices about your line and "
                         "money still come.")
    return translate(lang, HELP)


async def _example_code(session: AsyncSession) -> str:
    plans = await selfcare.plans_for_sale(session)
    return plans[0].code if plans else "M30"


def balance_text(lang: str, b: LineBalance) -> str:
    """Plan, data, minutes, SMS, wallet and expiry in one SMS-sized text."""
    totals = {t.kind: t.remaining_text for t in b.totals}
    fmt = formatter(lang)
    none = translate(lang, "none")
    return translate(
        lang, "{number}: plan {plan}; data {data}; calls {minutes}; SMS {sms}; wallet {wallet}; "
        "valid until {expiry}.", number=b.msisdn, plan=b.plan.name if b.plan else none,
        data=totals.get(BucketKind.data, fmt.data(0)),
        minutes=totals.get(BucketKind.voice, fmt.minutes(0)),
        sms=totals.get(BucketKind.sms, fmt.sms(0)), wallet=b.wallet.text,
        expiry=b.expires_at_text)


def plans_text(lang: str, plans: list[Plan]) -> str:
    fmt = formatter(lang)
    if not plans:
        return translate(lang, "No plans are on sale right now.")
    items = [translate(lang, "{code} {name} {price}/{days} days", code=p.code,
                       name=p.name(lang), price=fmt.money(p.price_minor, p.currency),
                       days=p.validity_days) for p in plans[:6]]
    return translate(lang, "Plans: {plans}. Text BUY <code> to buy.",
                     plans=translate(lang, "; ").join(items))
