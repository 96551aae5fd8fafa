"""What the SMS commands and the USSD menu do, on the same domain services as the portal
and the API (the balance is ``ledger.service.line_balance``; a purchase is an order paid
from the wallet by ``payments.service.start``; auto-renew is ``renewals.service``;
marketing consent is ``notifications.preferences``). Channels only parse and render.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.identity import normalize_phone
from openmvno.accounts.models import Account, Role
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan, PlanKind
from openmvno.errors import DomainError, InvalidInput, NotFound
from openmvno.i18n import normalize_language, translate
from openmvno.ledger import service as ledger
from openmvno.lines.models import Line, LineState
from openmvno.notifications import service as notifications
from openmvno.orders import service as orders
from openmvno.orders.models import Order, OrderState
from openmvno.runtime import Runtime
from openmvno.selfcare.models import InboundMessage, SmsConfirmation

SOLD = (PlanKind.data, PlanKind.voice, PlanKind.mixed, PlanKind.addon)


@dataclass(frozen=True)
class Subscriber:
    account: Account
    line: Line | None
    msisdn: str

    @property
    def language(self) -> str:
        return normalize_language(self.account.language)


def phone(rt: Runtime, raw: str) -> str | None:
    """E.164 of a sender address, or None when it is no phone number."""
    text = raw.strip()
    if text.isdigit() and not text.startswith("0") and len(text) > 11:
        text = f"+{text}"  # international numbers arrive without "+"
    try:
        return normalize_phone(text, rt.settings.default_region)
    except InvalidInput:
        return None


async def subscriber_for(session: AsyncSession, rt: Runtime, raw: str) -> Subscriber | None:
    """The subscriber behind a phone number: the owner of the line with that number, else
    the account registered with it (and its first line). None for anyone else."""
    number = phone(rt, raw)
    if number is None:
        return None
    line = await session.scalar(
        select(Line).where(Line.msisdn == number, Line.account_id.is_not(None),
                           Line.state != LineState.terminated))
    account: Account | None = None
    if line is not None and line.account_id is not None:
        account = await session.get(Account, line.account_id)
    else:
        account = await session.scalar(select(Account).where(Account.phone == number))
        if account is not None:
            line = await session.scalar(
                select(Line).where(Line.account_id == account.id,
                                   Line.state != LineState.terminated)
                .order_by(Line.created_at).limit(1))
    if account is None or not account.active or account.role != Role.subscriber:
        return None
    return Subscriber(account, line, number)


async def subscribers_for(session: AsyncSession, rt: Runtime, raws: Sequence[str]
                          ) -> dict[str, Subscriber | None]:
    """:func:`subscriber_for` of many sender addresses: the lines and their owners in two
    SELECTs whatever their number (a number with no line of its own falls back to
    :func:`subscriber_for`)."""
    numbers = {raw: phone(rt, raw) for raw in set(raws)}
    wanted = sorted({n for n in numbers.values() if n is not None})
    lines: dict[str, Line] = {}
    if wanted:
        for row in (await session.scalars(
                select(Line).where(Line.msisdn.in_(wanted), Line.account_id.is_not(None),
                                   Line.state != LineState.terminated))).all():
            lines.setdefault(row.msisdn, row)
    owners = sorted({x.account_id for x in lines.values() if x.account_id})
    accounts = {a.id: a for a in (await session.scalars(
        select(Account).where(Account.id.in_(owners)))).all()} if owners else {}
    found: dict[str, Subscriber | None] = {}
    for raw, number in numbers.items():
        if number is None:
            found[raw] = None
            continue
        line = lines.get(number)
        if line is None or line.account_id is None:
            found[raw] = await subscriber_for(session, rt, raw)
            continue
        account = accounts.get(line.account_id)
        ok = account is not None and account.active and account.role == Role.subscriber
        found[raw] = Subscriber(account, line, number) if ok and account else None
    return found


@dataclass(frozen=True)
class InboundRow:
    channel: str
    external_id: str
    sender: str
    account_id: uuid.UUID | None


async def take_inbound_many(session: AsyncSession, rows: Sequence[InboundRow]
                            ) -> list[uuid.UUID | None]:
    """:func:`take_inbound` of many messages in one INSERT (``ON CONFLICT DO NOTHING``):
    per message its id, None when that (channel, id) was already taken (or repeats in
    ``rows``)."""
    if not rows:
        return []
    now = clock.now()
    ids = [uuid.uuid4() for _ in rows]
    values = [{"id": i, "channel": r.channel, "external_id": r.external_id[:120],
               "sender": r.sender[:20], "account_id": r.account_id, "created_at": now}
              for i, r in zip(ids, rows, strict=True)]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (insert(InboundMessage).values(values)
                 .on_conflict_do_nothing(index_elements=["channel", "external_id"])
                 .returning(InboundMessage.id))
    taken = set((await session.execute(statement)).scalars().all())
    return [i if i in taken else None for i in ids]


async def take_inbound(session: AsyncSession, *, channel: str, external_id: str, sender: str,
                       account_id: uuid.UUID | None) -> uuid.UUID | None:
    """Record one inbound message; None when this (channel, id) was already taken."""
    row = InboundMessage(channel=channel, external_id=external_id[:120], sender=sender[:20],
                         account_id=account_id)
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return None
    return row.id


async def reply(session: AsyncSession, *, to: str, body: str, key: str,
                account_id: uuid.UUID | None) -> None:
    """Queue an SMS reply through the outbox (once per ``key``)."""
    await notifications.send_sms(session, to=to, body=body, dedupe_key=key[:120],
                                 account_id=account_id)


ReplyOut = notifications.SmsOut
"""One reply for :func:`reply_many`: to, body, dedupe key, account id."""


async def reply_many(session: AsyncSession, replies: Sequence[ReplyOut]) -> None:
    """Queue many SMS replies through the outbox in one statement (each once per key)."""
    await notifications.send_sms_many(session, replies)


async def balances(session: AsyncSession, rt: Runtime, subs: Sequence[Subscriber]
                   ) -> dict[uuid.UUID, ledger.LineBalance]:
    """:func:`balance` of many subscribers' lines by line id, in one SELECT per language
    (subscribers with no line are left out)."""
    return await ledger.balances_of_lines(
        session, [(s.line.id, s.language) for s in subs if s.line is not None],
        currency=rt.settings.default_currency)


async def balance(session: AsyncSession, rt: Runtime, sub: Subscriber) -> ledger.LineBalance:
    if sub.line is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    return await ledger.line_balance(session, line=sub.line, language=sub.language,
                                     currency=rt.settings.default_currency)


async def plans_for_sale(session: AsyncSession) -> list[Plan]:
    return [p for p in await catalog.list_plans(session) if p.kind in SOLD]


async def plan_by_code(session: AsyncSession, code: str) -> Plan | None:
    for plan in await plans_for_sale(session):
        if plan.code.upper() == code.upper():
            return plan
    return None


async def ask_to_buy(session: AsyncSession, rt: Runtime, sub: Subscriber, plan: Plan
                     ) -> SmsConfirmation:
    """A pending ``BUY`` for ``YES`` within ``sms_confirm_minutes`` (a newer one replaces
    the older ones)."""
    if sub.line is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    now = clock.now()
    await session.execute(
        update(SmsConfirmation)
        .where(SmsConfirmation.msisdn == sub.msisdn, SmsConfirmation.used_at.is_(None))
        .values(used_at=now))
    pending = SmsConfirmation(
        account_id=sub.account.id, line_id=sub.line.id, msisdn=sub.msisdn,
        plan_code=plan.code, created_at=now,
        expires_at=now + timedelta(minutes=rt.settings.sms_confirm_minutes))
    session.add(pending)
    await session.flush()
    return pending


async def take_confirmation(session: AsyncSession, sub: Subscriber) -> SmsConfirmation | None:
    """The newest pending ``BUY`` of this phone, used up by one conditional UPDATE (two
    ``YES`` at once: one wins); None when there is none or it expired."""
    now = clock.now()
    pending = await session.scalar(
        select(SmsConfirmation)
        .where(SmsConfirmation.msisdn == sub.msisdn, SmsConfirmation.used_at.is_(None),
               SmsConfirmation.expires_at > now,
               SmsConfirmation.account_id == sub.account.id)
        .order_by(SmsConfirmation.created_at.desc()).limit(1))
    if pending is None:
        return None
    taken = await session.execute(
        update(SmsConfirmation)
        .where(SmsConfirmation.id == pending.id, SmsConfirmation.used_at.is_(None))
        .values(used_at=now))
    return pending if getattr(taken, "rowcount", 0) == 1 else None


@dataclass(frozen=True)
class Bought:
    order: Order | None
    error: DomainError | None
    balance: ledger.LineBalance | None


async def buy(session: AsyncSession, rt: Runtime, sub: Subscriber, plan: Plan, *, key: str
              ) -> Bought:
    """Order ``plan`` for the subscriber's line and pay it from the wallet, in this
    transaction; ``key`` makes it idempotent (the same key never pays twice). A refusal
    (wallet short, plan not sellable, ...) leaves nothing behind and is returned."""
    if sub.line is None:
        return Bought(None, NotFound("line_not_found", "There is no such line on your account."),
                      None)
    from openmvno.payments import service as payments

    kind = "addon" if plan.kind == PlanKind.addon else "plan"
    body = {"kind": kind, "plan_code": plan.code, "line_id": str(sub.line.id)}
    try:
        async with session.begin_nested():
            order, _ = await orders.create(session, rt, account=sub.account,
                                           idempotency_key=key[:128], body=body,
                                           language=sub.language)
            if order.state == OrderState.pending_payment:
                await payments.start(session, rt, order=order, method="wallet",
                                     payer=sub.account)
    except DomainError as exc:
        return Bought(None, exc, None)
    await session.refresh(sub.line)
    return Bought(order, None, await balance(session, rt, sub))


async def auto_renew(session: AsyncSession, rt: Runtime, sub: Subscriber, enabled: bool) -> bool:
    """Turn auto-renew on or off for the subscriber's line (contract 5); returns the state."""
    if sub.line is None:
        raise NotFound("line_not_found", "There is no such line on your account.")
    from openmvno.renewals import service as renewals

    view = await renewals.set_auto_renew(session, account_id=sub.account.id,
                                         line_id=sub.line.id, enabled=enabled,
                                         settings=rt.settings)
    return bool(view.enabled)


async def auto_renew_enabled(session: AsyncSession, sub: Subscriber) -> bool:
    if sub.line is None:
        return False
    from openmvno.renewals import service as renewals

    view = await renewals.auto_renew_view(session, account_id=sub.account.id,
                                          line_id=sub.line.id)
    return bool(view.enabled)


async def stop_marketing(session: AsyncSession, sub: Subscriber) -> None:
    """Marketing opt-out (contract 6); notices about the line and money still go."""
    from openmvno.notifications import preferences

    await preferences.set_preferences(session, account_id=sub.account.id, sms=None,
                                      email=None, marketing=False)


def topup_link(rt: Runtime, sub: Subscriber) -> str:
    """The guest top-up page with this number filled in (anyone may pay it)."""
    number = sub.line.msisdn if sub.line is not None else sub.msisdn
    return f"{rt.settings.public_url}/topup?msisdn={number.replace('+', '%2B')}"


async def send_topup_link(session: AsyncSession, rt: Runtime, sub: Subscriber, *, key: str
                          ) -> None:
    await reply(session, to=sub.msisdn, key=key, account_id=sub.account.id,
                body=translate(sub.language, "Top up {number} here: {link}",
                               number=sub.line.msisdn if sub.line else sub.msisdn,
                               link=topup_link(rt, sub)))
