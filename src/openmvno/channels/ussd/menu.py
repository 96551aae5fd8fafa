"""The USSD menu (Africa's Talking callback convention): the inputs of a session arrive
joined by ``*`` in ``text`` on every request, and each answer is a screen starting
``CON `` (more to come) or ``END `` (session over), at most 182 characters.

1 balance; 2 buy a plan from the wallet (list, pick, confirm); 3 a top-up link by SMS;
4 auto-renew on/off; ``0`` back, ``00`` home; a bad choice says so and shows the menu
again. The menu is in the subscriber's language. Actions run only for the newest input
and are idempotent per session (a gateway retry buys nothing twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.catalog.models import Plan
from openmvno.errors import DomainError
from openmvno.formatting import formatter
from openmvno.i18n import translate
from openmvno.ledger.models import BucketKind
from openmvno.runtime import Runtime
from openmvno.selfcare import service as selfcare
from openmvno.selfcare.service import Subscriber

MAX_SCREEN = 182
MAX_PLANS = 5
UNKNOWN = "END 本号码未登记，请先注册。This number is not registered with us."


@dataclass
class _Nav:
    stack: list[tuple[str, str]] = field(default_factory=lambda: [("home", "")])
    invalid: bool = False
    action: tuple[str, str] | None = None


def fit(screen: str) -> str:
    """Never more than 182 characters (a long plan name or reason is cut)."""
    return screen if len(screen) <= MAX_SCREEN else screen[:MAX_SCREEN - 1] + "…"


def navigate(tokens: list[str], plans: list[Plan]) -> _Nav:
    """Where the inputs lead; an action is taken only when it is the last input."""
    nav = _Nav()
    for index, raw in enumerate(tokens):
        tok = raw.strip()
        last = index == len(tokens) - 1
        nav.invalid = False
        screen, arg = nav.stack[-1]
        if tok == "00":
            nav.stack = [("home", "")]
            continue
        if tok == "0" and len(nav.stack) > 1:
            nav.stack.pop()
            continue
        if screen == "home" and tok in ("1", "2", "4"):
            nav.stack.append({"1": ("balance", ""), "2": ("plans", ""), "4": ("auto", "")}[tok])
        elif screen == "home" and tok == "3":
            if last:
                nav.action = ("topup", "")
        elif screen == "plans" and tok.isdigit() and 1 <= int(tok) <= min(len(plans), MAX_PLANS):
            nav.stack.append(("confirm", plans[int(tok) - 1].code))
        elif screen == "confirm" and tok == "1":
            if last:
                nav.action = ("buy", arg)
        elif screen == "auto" and tok in ("1", "2"):
            if last:
                nav.action = ("auto", tok)
        else:
            nav.invalid = True
    return nav


async def respond(session: AsyncSession, rt: Runtime, *, session_id: str, phone: str,
                  text: str) -> str:
    """The screen for this request."""
    sub = await selfcare.subscriber_for(session, rt, phone)
    if sub is None:
        return UNKNOWN
    lang = sub.language
    if sub.line is None:
        return fit("END " + translate(lang, "This number has no line with us yet."))
    plans = await selfcare.plans_for_sale(session)
    tokens = text.split("*") if text else []
    nav = navigate(tokens, plans)
    if nav.action is not None:
        return fit(await _act(session, rt, sub, nav.action, session_id, len(tokens)))
    screen, arg = nav.stack[-1]
    body = await _screen(session, rt, sub, screen, arg, plans)
    if nav.invalid:
        body = translate(lang, "Invalid choice.") + "\n" + body
    return fit("CON " + body)


async def _screen(session: AsyncSession, rt: Runtime, sub: Subscriber, screen: str, arg: str,
                  plans: list[Plan]) -> str:
    lang = sub.language
    back = translate(lang, "0 Back")
    if screen == "balance":
        b = await selfcare.balance(session, rt, sub)
        totals = {t.kind: t.remaining_text for t in b.totals}
        fmt = formatter(lang)
        return translate(
            lang, "{plan}\nData {data}\nCalls {minutes}\nSMS {sms}\nWallet {wallet}\n"
            "Until {expiry}", plan=(b.plan.name if b.plan else translate(lang, "none"))[:30],
            data=totals.get(BucketKind.data, fmt.data(0)),
            minutes=totals.get(BucketKind.voice, fmt.minutes(0)),
            sms=totals.get(BucketKind.sms, fmt.sms(0)), wallet=b.wallet.text,
            expiry=b.expires_at_text) + "\n" + translate(lang, "0 Back 00 Home")
    if screen == "plans":
        if not plans:
            return translate(lang, "No plans are on sale right now.") + "\n" + back
        fmt = formatter(lang)
        lines = [translate(lang, "Pick a plan:")]
        for i, plan in enumerate(plans[:MAX_PLANS], start=1):
            lines.append(translate(lang, "{n} {name} {price}/{days}d", n=i,
                                   name=plan.name(lang)[:18],
                                   price=fmt.money(plan.price_minor, plan.currency),
                                   days=plan.validity_days))
        return "\n".join([*lines, back])
    if screen == "confirm":
        chosen = next((p for p in plans if p.code == arg), None)
        if chosen is None:
            return translate(lang, "No plans are on sale right now.") + "\n" + back
        fmt = formatter(lang)
        b = await selfcare.balance(session, rt, sub)
        return translate(lang, "Buy {name} for {price}, {days} days, from your wallet ({wallet})?",
                         name=chosen.name(lang)[:30],
                         price=fmt.money(chosen.price_minor, chosen.currency),
                         days=chosen.validity_days, wallet=b.wallet.text) + "\n" + translate(
            lang, "1 Confirm") + "\n" + back
    if screen == "auto":
        on = await selfcare.auto_renew_enabled(session, sub)
        state = translate(lang, "Auto-renew is on." if on else "Auto-renew is off.")
        return "\n".join([state, translate(lang, "1 Turn on"), translate(lang, "2 Turn off"),
                          back])
    return "\n".join([translate(lang, "1 Balance"), translate(lang, "2 Buy a plan"),
                      translate(lang, "3 Top-up link by SMS"), translate(lang, "4 Auto-renew")])


async def _act(session: AsyncSession, rt: Runtime, sub: Subscriber, action: tuple[str, str],
               session_id: str, step: int) -> str:
    lang = sub.language
    kind, arg = action
    if kind == "topup":
        await selfcare.send_topup_link(session, rt, sub, key=f"ussd-topup:{session_id}")
        return "END " + translate(lang, "We sent a top-up link for {number} by SMS.",
                                  number=sub.line.msisdn if sub.line else sub.msisdn)
    if kind == "auto":
        try:
            on = await selfcare.auto_renew(session, rt, sub, arg == "1")
        except DomainError as exc:
            return "END " + translate(lang, exc.message, **exc.params)
        return "END " + translate(lang, "Auto-renew is now on." if on
                                  else "Auto-renew is now off.")
    plan = await selfcare.plan_by_code(session, arg)
    if plan is None:
        return "END " + translate(lang, "No plans are on sale right now.")
    bought = await selfcare.buy(session, rt, sub, plan, key=f"ussd:{session_id}:{step}:{arg}")
    if bought.error is not None:
        return "END " + translate(lang, "Not bought: {reason}", reason=translate(
            lang, bought.error.message, **bought.error.params))
    assert bought.balance is not None
    return "END " + translate(lang, "Done: {plan} until {expiry}. Wallet {wallet}.",
                              plan=plan.name(lang)[:30], expiry=bought.balance.expires_at_text,
                              wallet=bought.balance.wallet.text)
