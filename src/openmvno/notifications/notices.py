"""Subscriber notices: one event (a reminder, a renewal, a state change) becomes one
notice per ``key`` and its SMS and/or email in the outbox, in the subscriber's language
and chosen channels, in the same transaction as the change that caused it.

Exactly once is the UNIQUE ``notices.key`` (``INSERT … ON CONFLICT DO NOTHING
RETURNING``), never a look-up: a replay, a second worker or a crash-and-retry queues
nothing twice. The key convention is ``f"{event}:{line_id or account_id}:{period}"``
(the period: the expiry date ISO, the bucket id + threshold, …).

:func:`notify_many` does a batch in a fixed number of statements per chunk of
:data:`CHUNK` requests: the subscribers and their preferences (one SELECT), their
lines' numbers (one SELECT), the operator's template overrides (one SELECT), the notice
keys (one INSERT … ON CONFLICT DO NOTHING RETURNING) and the outbox rows of the keys that
were new (one INSERT).

Money is passed as minor units + currency, datetimes as aware datetimes; both are
formatted with babel in the reader's language, dates in the operator's time zone
(``settings.timezone``). Non-urgent notices wait for the end of quiet hours
(``settings.quiet_hours_start``/``_end``, local time): their outbox rows are due then.
Transactional notices always reach the subscriber on at least one channel they can be
reached on; a marketing notice is sent only to those who opted in.

The :data:`EVENTS` table documents every event: its parameters, its placeholders (what
an operator's template may use), when it fires and its key (docs/notices.md is built
from the same facts).
"""

from __future__ import annotations

import enum
import json
import string
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any, Literal

from babel.numbers import format_decimal
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.config import Settings, get_settings
from openmvno.db import among
from openmvno.formatting import formatter, next_send_time
from openmvno.i18n import LANGUAGES, N_, normalize_language, translate
from openmvno.ids import new_id
from openmvno.lines.models import Line
from openmvno.notifications.models import (
    NoticeTemplate,
    NotificationPreference,
    OutboxKind,
    OutboxState,
)

Channel = Literal["sms", "email"]
CHANNELS: tuple[Channel, ...] = ("sms", "email")
CHUNK = 500
"""Requests per round of statements in :func:`notify_many`."""

ParamKind = Literal["int", "text", "plan", "datetime", "money", "currency", "flag", "reason",
                    "data", "percent"]


@dataclass(frozen=True)
class Param:
    """One parameter a caller passes. ``money`` parameters end in ``_minor`` and go with a
    ``currency`` parameter; their placeholder drops the suffix (``amount_minor`` →
    ``{amount}``)."""

    name: str
    kind: ParamKind
    required: bool = True
    doc: str = ""

    @property
    def placeholder(self) -> str | None:
        if self.kind == "currency":
            return None
        if self.kind == "money":
            return self.name.removesuffix("_minor")
        return self.name


@dataclass(frozen=True)
class Event:
    """A kind of notice: its built-in texts (English message ids, translated by the
    catalog), its parameters, and the facts docs/notices.md lists."""

    name: str
    subject: str
    body: str
    params: tuple[Param, ...]
    fires: str
    key: str
    urgent: bool = False
    """The usual urgency callers pass (documentation; the caller decides per notice)."""
    marketing: bool = False
    sample: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def filled(self) -> tuple[tuple[Param, str], ...]:
        """The parameters that fill a placeholder, with its name."""
        return tuple((p, p.placeholder) for p in self.params if p.placeholder)

    @cached_property
    def placeholders(self) -> tuple[str, ...]:
        own = [p.placeholder for p in self.params if p.placeholder]
        extra = ["days"] if any(p.name == "days_left" for p in self.params) else []
        if any(p.name == "exp_month" for p in self.params):
            extra.append("card_expiry")
        return (*COMMON_PLACEHOLDERS, *own, *extra)


COMMON_PLACEHOLDERS = ("operator", "name", "msisdn")
"""Every event may use these: the operator's name, the subscriber's name, the line's number
(the account's phone number for an account notice)."""

_SAMPLE_AT = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
_PLAN = Param("plan", "plan", doc="the plan: its name, or {'zh-CN': …, 'en': …}, or a Plan")
_CUR = Param("currency", "currency", doc="ISO 4217 code of the money parameters")


def _money(name: str, doc: str, required: bool = True) -> Param:
    return Param(name, "money", required, doc)


EVENT_LIST: tuple[Event, ...] = (
    Event(
        "expiry_reminder",
        N_("{plan} ends in {days}"),
        N_("{operator}: {plan} on {msisdn} ends on {expires_at} (in {days}). "
           "Renewing costs {amount}. {auto_renew}"),
        (Param("days_left", "int", doc="whole days until expiry (7, 3, 1)"), _PLAN,
         Param("expires_at", "datetime", doc="the line's expiry"),
         _money("amount_minor", "what renewing costs"), _CUR,
         Param("auto_renew", "flag", required=False,
               doc="True/False: auto-renew on or off; None or absent: not mentioned")),
        fires="days before a line's expiry (settings.expiry_reminder_days, default 7, 3, 1); "
              "by notifications/reminders.py",
        key="expiry_reminder:{line_id}:{expires_at ISO}:{threshold days}",
        sample={"days_left": 3, "plan": "Monthly 30 GB", "expires_at": _SAMPLE_AT,
                "amount_minor": 3000, "currency": "CNY", "auto_renew": True},
    ),
    Event(
        "renewal_succeeded",
        N_("{plan} was renewed"),
        N_("{operator}: {plan} on {msisdn} was renewed for {amount}. "
           "It now runs until {expires_at}."),
        (_PLAN, Param("expires_at", "datetime", doc="the new expiry"),
         _money("amount_minor", "what was charged"), _CUR),
        fires="a line was renewed automatically (wallet or saved card)",
        key="renewal_succeeded:{line_id}:{period_key}",
        sample={"plan": "Monthly 30 GB", "expires_at": _SAMPLE_AT, "amount_minor": 3000,
                "currency": "CNY"},
    ),
    Event(
        "renewal_failed",
        N_("{plan} could not be renewed"),
        N_("{operator}: we could not renew {plan} on {msisdn}: {reason}. "
           "Pay {amount} before {expires_at} to keep your line."),
        (_PLAN, Param("reason", "reason", doc="insufficient_funds, card_declined, "
                                               "no_payment_method or another code"),
         Param("expires_at", "datetime", doc="when the plan ends (or ended)"),
         _money("amount_minor", "what renewing costs"), _CUR),
        fires="an automatic renewal attempt failed (each attempt's own period key)",
        key="renewal_failed:{line_id}:{period_key}:{attempt}",
        sample={"plan": "Monthly 30 GB", "reason": "card_declined", "expires_at": _SAMPLE_AT,
                "amount_minor": 3000, "currency": "CNY"},
    ),
    Event(
        "card_expiring",
        N_("Your saved card is about to expire"),
        N_("{operator}: your saved card {brand} ending in {last4} expires after "
           "{card_expiry}. Add a new card to keep auto-renew working."),
        (Param("brand", "text", doc="card brand (Visa, UnionPay …)"),
         Param("last4", "text", doc="last four digits"),
         Param("exp_month", "int", doc="expiry month 1–12"),
         Param("exp_year", "int", doc="expiry year, four digits")),
        fires="a saved card used for auto-renew expires within the month",
        key="card_expiring:{account_id}:{card_id}:{exp_year}-{exp_month}",
        sample={"brand": "Visa", "last4": "4242", "exp_month": 12, "exp_year": 2026},
    ),
    Event(
        "wallet_low",
        N_("Your wallet is running low"),
        N_("{operator}: your wallet balance is {balance}. "
           "Top up to keep your services running."),
        (_money("balance_minor", "the wallet balance now"), _CUR),
        fires="the wallet fell below the subscriber's threshold",
        key="wallet_low:{account_id}:{date or threshold crossing}",
        sample={"balance_minor": 500, "currency": "CNY"},
    ),
    Event(
        "auto_topup_done",
        N_("Your wallet was topped up"),
        N_("{operator}: your wallet was topped up with {amount} from your saved card. "
           "Balance: {balance}."),
        (_money("amount_minor", "the top-up"), _money("balance_minor", "the balance after"),
         _CUR),
        fires="an automatic wallet top-up from a saved card succeeded",
        key="auto_topup_done:{account_id}:{order or attempt id}",
        sample={"amount_minor": 5000, "balance_minor": 5500, "currency": "CNY"},
    ),
    Event(
        "grace_started",
        N_("{plan} has expired"),
        N_("{operator}: {plan} on {msisdn} has expired. Your line stays on until "
           "{grace_ends_at}; pay {amount} to renew it."),
        (_PLAN, Param("grace_ends_at", "datetime", doc="end of the grace period"),
         _money("amount_minor", "what renewing costs"), _CUR),
        fires="a line's plan expired with nothing renewed: active → grace",
        key="grace_started:{line_id}:{expires_at ISO}",
        urgent=True,
        sample={"plan": "Monthly 30 GB", "grace_ends_at": _SAMPLE_AT, "amount_minor": 3000,
                "currency": "CNY"},
    ),
    Event(
        "suspended",
        N_("Your line is suspended"),
        N_("{operator}: {msisdn} is suspended because its plan was not renewed. "
           "Renew it to restore service at once."),
        (),
        fires="grace ended with nothing renewed: grace → suspended (停机)",
        key="suspended:{line_id}:{expires_at ISO}",
        urgent=True,
    ),
    Event(
        "restored",
        N_("Your line is working again"),
        N_("{operator}: {msisdn} is working again. {plan} runs until {expires_at}."),
        (_PLAN, Param("expires_at", "datetime", doc="the new expiry")),
        fires="a payment renewed a line in grace or suspended (复机)",
        key="restored:{line_id}:{new expires_at ISO}",
        urgent=True,
        sample={"plan": "Monthly 30 GB", "expires_at": _SAMPLE_AT},
    ),
    Event(
        "terminated",
        N_("Your line was closed"),
        N_("{operator}: {msisdn} was closed because its plan was not renewed. "
           "The money in your wallet stays yours."),
        (),
        fires="a suspended line was terminated after the configured time",
        key="terminated:{line_id}:{expires_at ISO}",
    ),
    Event(
        "data_threshold",
        N_("{percent}% of your data is used"),
        N_("{operator}: {percent}% of the data in {plan} on {msisdn} is used."),
        (Param("percent", "percent", doc="the threshold crossed (80, 100 …)"), _PLAN),
        fires="usage crossed a data threshold of a bucket",
        key="data_threshold:{line_id}:{bucket_id}:{percent}",
        sample={"percent": 80, "plan": "Monthly 30 GB"},
    ),
    Event(
        "overage_started",
        N_("Your allowance is used up"),
        N_("{operator}: the allowance of {plan} on {msisdn} is used up; further use is "
           "charged to your wallet."),
        (_PLAN,),
        fires="a line with the charge_wallet overage rule used up its allowance",
        key="overage_started:{line_id}:{bucket_id}",
        sample={"plan": "Monthly 30 GB"},
    ),
    Event(
        "line_barred",
        N_("Your line is barred"),
        N_("{operator}: {msisdn} is barred: {reason}. "
           "Top up or buy an add-on to use it again."),
        (Param("reason", "reason", doc="allowance_used, wallet_empty or another code"),),
        fires="usage was refused for a line (allowance used up and no overage)",
        key="line_barred:{line_id}:{bucket_id or period}",
        urgent=True,
        sample={"reason": "allowance_used"},
    ),
    Event(
        "line_unbarred",
        N_("Your line can be used again"),
        N_("{operator}: {msisdn} can be used again."),
        (),
        fires="a barred line was released (top-up, add-on, renewal)",
        key="line_unbarred:{line_id}:{period}",
        urgent=True,
    ),
    Event(
        "offer",
        N_("An offer for you"),
        N_("{operator}: {plan} for {amount}. Turn offers off in your account's "
           "notification settings."),
        (_PLAN, _money("amount_minor", "the offer's price"), _CUR),
        fires="an operator's marketing message (only to subscribers who opted in)",
        key="offer:{account_id}:{campaign}",
        marketing=True,
        sample={"plan": "Monthly 30 GB", "amount_minor": 2500, "currency": "CNY"},
    ),
)
# Console (CONSOLE): an agent moved a misdirected top-up; both holders are told.
EVENT_LIST += (
    Event(
        "topup_moved_out",
        N_("A top-up was moved to the right number"),
        N_("{operator}: a top-up of {amount} that reached your account by mistake was "
           "moved to {number}, at the payer's request through customer service."),
        (_money("amount_minor", "the top-up"), _CUR,
         Param("number", "text", doc="the number the money went to")),
        fires="an agent moved a misdirected top-up away from this account (console)",
        key="topup_moved_out:{order id}",
        urgent=True,
        sample={"amount_minor": 5000, "currency": "CNY", "number": "+8613800000000"},
    ),
    Event(
        "topup_moved_in",
        N_("A top-up reached your wallet"),
        N_("{operator}: {amount} meant for you (first sent to {number} by mistake) is now in "
           "your wallet."),
        (_money("amount_minor", "the top-up"), _CUR,
         Param("number", "text", doc="the number it went to first")),
        fires="an agent moved a misdirected top-up to this account (console)",
        key="topup_moved_in:{order id}",
        urgent=True,
        sample={"amount_minor": 5000, "currency": "CNY", "number": "+8613800000000"},
    ),
)
EVENTS: dict[str, Event] = {e.name: e for e in EVENT_LIST}
"""Every notice event by name; see each :class:`Event`'s ``params`` for what to pass."""

EMAIL_BODY = N_("Hello {name},\n\n{text}\n\n{operator}")
AUTO_RENEW_ON = N_("Auto-renew is on: we renew it for you.")
AUTO_RENEW_OFF = N_("Auto-renew is off: renew it yourself to keep the line.")
ONE_DAY = N_("1 day")
N_DAYS = N_("{n} days")
REASONS = {
    "insufficient_funds": N_("your wallet does not have enough money"),
    "card_declined": N_("your card was declined"),
    "no_payment_method": N_("no payment method is set"),
    "card_switched_off": N_("payment by card is switched off for now"),
    "wallet_switched_off": N_("payment from the wallet is switched off for now"),
    "allowance_used": N_("the plan's allowance is used up"),
    "wallet_empty": N_("your wallet cannot pay for more use"),
}
OTHER_REASON = N_("the payment did not go through")


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class NoticeRequest:
    """One notice to queue (see :func:`notify`)."""

    account_id: uuid.UUID
    event: str
    key: str
    params: Mapping[str, Any]
    line_id: uuid.UUID | None = None
    urgent: bool = False


def check(request: NoticeRequest) -> Event:
    """The request's event, after checking it names a known event with every required
    parameter (a caller's mistake is a ``ValueError``, found by its first test)."""
    event = EVENTS.get(request.event)
    if event is None:
        raise ValueError(f"unknown notice event {request.event!r}")
    missing = [p.name for p in event.params if p.required and request.params.get(p.name) is None]
    if missing:
        raise ValueError(f"notice {request.event!r} needs {', '.join(missing)}")
    if not request.key or len(request.key) > 200:
        raise ValueError("a notice key is 1–200 characters")
    return event


# ---------------------------------------------------------------- rendering


def settings_of(session: AsyncSession) -> Settings:
    """The runtime's settings, which its sessions carry (see ``build_runtime``)."""
    found = session.info.get("settings")
    return found if isinstance(found, Settings) else get_settings()


def local_date(value: datetime, language: str, tz: str) -> str:
    """A datetime as a person reads it: in the operator's time zone, babel-formatted."""
    return formatter(language).date(value, tz=tz)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _plan_name(value: Any, language: str) -> str:
    if isinstance(value, Mapping):
        return str(value.get(language) or value.get("en") or next(iter(value.values()), ""))
    name = getattr(value, "name", None)
    if callable(name):
        return str(name(language))
    zh, en = getattr(value, "name_zh", None), getattr(value, "name_en", None)
    if zh is not None or en is not None:  # a row with both names
        return str((zh if language == "zh-CN" else en) or en or zh)
    return str(value)


def _days(language: str, n: int) -> str:
    if n == 1:
        return translate(language, ONE_DAY)
    return translate(language, N_DAYS, n=n)


def placeholder_values(
    event: Event, params: Mapping[str, Any], *, language: str, settings: Settings,
    name: str = "", msisdn: str = "",
) -> dict[str, str]:
    """The text of every placeholder of ``event`` for one reader."""
    fmt = formatter(language)
    currency = str(params.get("currency") or settings.default_currency)
    out: dict[str, str] = {"operator": settings.operator_name, "name": name, "msisdn": msisdn}
    for p, key in event.filled:
        value = params.get(p.name)
        if value is None:
            out[key] = ""
        elif p.kind == "money":
            out[key] = fmt.money(int(value), currency)
        elif p.kind == "datetime":
            out[key] = local_date(_as_datetime(value), language, settings.timezone)
        elif p.kind == "plan":
            out[key] = _plan_name(value, language)
        elif p.kind in ("int", "percent"):
            out[key] = str(format_decimal(int(value), locale=fmt.locale))
        elif p.kind == "data":
            out[key] = fmt.data(int(value))
        elif p.kind == "flag":
            out[key] = translate(language, AUTO_RENEW_ON if value else AUTO_RENEW_OFF)
        elif p.kind == "reason":
            out[key] = translate(language, REASONS.get(str(value), OTHER_REASON))
        else:
            out[key] = str(value)
    if "days_left" in params:
        out["days"] = _days(language, int(params["days_left"]))
    if "exp_month" in params and "exp_year" in params:
        out["card_expiry"] = f"{int(params['exp_month']):02d}/{int(params['exp_year'])}"
    return out


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


Overrides = Mapping[tuple[str, str, str], tuple[str, str]]
"""(event, language, channel) → (subject, body) of the operator's own texts."""


def _fill(template: str, values: Mapping[str, str]) -> str:
    try:  # every placeholder of the event is in ``values`` (see placeholder_values)
        return template.format_map(values).strip()
    except KeyError:
        return template.format_map(_Missing(values)).strip()


class _Missing(dict[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)

    def __missing__(self, key: str) -> str:
        return ""


def render(
    event: Event, channel: Channel, language: str, values: Mapping[str, str],
    overrides: Overrides | None = None,
) -> Rendered:
    """The subject and body of one notice on one channel (the operator's text if there is
    one for this event, language and channel; else the built-in one, translated)."""
    own = (overrides or {}).get((event.name, language, channel))
    if own is not None:
        subject_t, body_t = own
        subject = _fill(subject_t, values) if subject_t else ""
        body = _fill(body_t, values)
        if channel == "email" and not subject:
            subject = _fill(translate(language, event.subject), values)
        return Rendered(subject, _tidy(body))
    subject_t, body_t, email_t = _builtin(event.name, language)
    text = _tidy(_fill(body_t, values))
    if channel == "sms":
        return Rendered("", text)
    body = email_t.format(text=text, name=values.get("name") or "",
                          operator=values.get("operator") or "")
    return Rendered(_fill(subject_t, values), body)


@lru_cache(maxsize=256)
def _builtin(event: str, language: str) -> tuple[str, str, str]:
    """The built-in subject, text and email frame of ``event`` in ``language``."""
    e = EVENTS[event]
    return (translate(language, e.subject), translate(language, e.body),
            translate(language, EMAIL_BODY))


def _tidy(text: str) -> str:
    """No doubled or trailing spaces where an optional placeholder was empty."""
    while "  " in text:
        text = text.replace("  ", " ")
    return text.strip()


# ---------------------------------------------------------------- template checks


def template_fields(template: str) -> list[str]:
    """The placeholders a template uses; a ``ValueError`` for a broken one (an unclosed
    brace) or one that is not a plain name (no attributes, indexes, conversions or
    format specs: an operator's text can only fill in values)."""
    names = []
    for _literal, field_name, spec, conversion in string.Formatter().parse(template):
        if field_name is None:
            continue
        if not field_name.isidentifier() or spec or conversion:
            raise ValueError(field_name or "{}")
        names.append(field_name)
    return names


# ---------------------------------------------------------------- quiet hours


def quiet_until(now: datetime, settings: Settings) -> datetime | None:
    """When quiet hours end if ``now`` is inside them (else None), in UTC (the operator's
    zone and ``quiet_hours_start``/``_end``; see :func:`openmvno.formatting.next_send_time`)."""
    resume = next_send_time(now, settings=settings)
    return None if resume == now else resume


def send_time(now: datetime, settings: Settings, *, urgent: bool) -> datetime:
    """When a notice's messages are due: now, or the end of quiet hours."""
    if urgent:
        return now
    return quiet_until(now, settings) or now


# ---------------------------------------------------------------- queueing


async def notify(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    event: str,
    key: str,
    params: dict[str, Any],
    line_id: uuid.UUID | None = None,
    urgent: bool = False,
) -> bool:
    """Queue one notice exactly once per ``key``; False when it was already queued (or
    the account does not exist)."""
    request = NoticeRequest(account_id=account_id, event=event, key=key, params=params,
                            line_id=line_id, urgent=urgent)
    return await notify_many(session, [request]) == 1


@dataclass
class _Reader:
    name: str
    language: str
    phone: str | None
    email: str | None
    sms: bool
    email_on: bool
    marketing: bool


def channels_for(reader: _Reader, *, marketing: bool) -> list[Channel]:
    """The channels a notice goes out on: the subscriber's choice among those they can be
    reached on; a transactional notice falls back to any reachable channel (it cannot be
    switched off), a marketing one goes nowhere without consent."""
    reachable = {"sms": bool(reader.phone), "email": bool(reader.email)}
    wanted: dict[Channel, bool] = {"sms": reader.sms, "email": reader.email_on}
    chosen: list[Channel] = [c for c in CHANNELS if wanted[c] and reachable[c]]
    if marketing:
        return chosen if reader.marketing else []
    if not chosen:
        chosen = [c for c in CHANNELS if reachable[c]][:1]
    return chosen


async def load_overrides(session: AsyncSession, events: Iterable[str]) -> dict[
    tuple[str, str, str], tuple[str, str]
]:
    rows = await session.execute(
        select(NoticeTemplate.event, NoticeTemplate.language, NoticeTemplate.channel,
               NoticeTemplate.subject, NoticeTemplate.body)
        .where(NoticeTemplate.event.in_(sorted(set(events))))
    )
    return {(e, lang, ch): (subj, body) for e, lang, ch, subj, body in rows.all()}


async def notify_many(session: AsyncSession, items: Sequence[NoticeRequest]) -> int:
    """Queue a batch of notices (each exactly once per key) in a fixed number of
    statements per :data:`CHUNK`; returns how many were new."""
    settings = settings_of(session)
    total = 0
    for start in range(0, len(items), CHUNK):
        total += await _notify_chunk(session, items[start:start + CHUNK], settings)
    return total


async def _notify_chunk(
    session: AsyncSession, items: Sequence[NoticeRequest], settings: Settings
) -> int:
    unique: dict[str, NoticeRequest] = {}
    for item in items:
        check(item)
        unique.setdefault(item.key, item)
    if not unique:
        return 0
    requests = list(unique.values())
    account_ids = sorted({r.account_id for r in requests})
    rows = await session.execute(
        select(Account.id, Account.name, Account.language, Account.phone, Account.email,
               NotificationPreference.sms, NotificationPreference.email,
               NotificationPreference.marketing)
        .outerjoin(NotificationPreference, NotificationPreference.account_id == Account.id)
        .where(among(session, Account.id, account_ids))
    )
    readers = {
        row[0]: _Reader(
            name=row[1], language=normalize_language(row[2], settings.default_language),
            phone=row[3], email=row[4], sms=True if row[5] is None else bool(row[5]),
            email_on=True if row[6] is None else bool(row[6]), marketing=bool(row[7]),
        )
        for row in rows.all()
    }
    line_ids = sorted({r.line_id for r in requests if r.line_id is not None})
    numbers: dict[uuid.UUID, str] = {}
    if line_ids:
        found = await session.execute(
            select(Line.id, Line.msisdn).where(among(session, Line.id, line_ids))
        )
        numbers = {lid: msisdn for lid, msisdn in found.all()}
    overrides = await load_overrides(session, {r.event for r in requests})

    now = clock.now()
    later = send_time(now, settings, urgent=False)
    notice_rows: list[dict[str, Any]] = []
    outgoing: dict[str, list[dict[str, Any]]] = {}
    for r in requests:
        reader = readers.get(r.account_id)
        if reader is None:
            continue
        event = EVENTS[r.event]
        channels = channels_for(reader, marketing=event.marketing)
        notice_id = new_id()
        notice_rows.append({
            "id": notice_id, "key": r.key, "event": r.event, "account_id": r.account_id,
            "line_id": r.line_id, "urgent": r.urgent, "channels": ",".join(channels),
            "created_at": now,
        })
        if not channels:
            continue
        values = placeholder_values(
            event, r.params, language=reader.language, settings=settings, name=reader.name,
            msisdn=numbers.get(r.line_id, "") if r.line_id else (reader.phone or ""),
        )
        due = now if r.urgent else later
        messages = []
        for channel in channels:
            text = render(event, channel, reader.language, values, overrides)
            messages.append({
                "id": new_id(),
                "kind": OutboxKind.sms if channel == "sms" else OutboxKind.email,
                "dedupe_key": f"notice-{channel}:{notice_id}",
                "account_id": r.account_id,
                "recipient": reader.phone if channel == "sms" else reader.email,
                "subject": text.subject[:200], "body": text.body,
                "payload": {"notice": str(notice_id), "event": r.event,
                            "language": reader.language},
                "state": OutboxState.pending, "attempts": 0, "next_attempt_at": due,
                "claimed_until": None, "last_error": "", "created_at": now, "sent_at": None,
            })
        outgoing[r.key] = messages
    if not notice_rows:
        return 0
    # In key order: two jobs queuing overlapping keys at once (reminders from several
    # workers) wait on each other's rows in the same order instead of deadlocking.
    notice_rows.sort(key=lambda row: row["key"])
    new_keys = await _insert_notices(session, notice_rows)
    batch = [m for k in new_keys for m in outgoing.get(k, ())]
    if batch:
        await insert_outbox(session, batch)
    return len(new_keys)


# ---------------------------------------------------------------- the two INSERTs
# One statement each whatever the chunk's size: PostgreSQL gets one array per column
# (``unnest``), SQLite one JSON document (``json_each``), in the representation the ORM
# columns store (SQLite: UUIDs as 32 hex digits, UTC datetimes as text). No per-row
# parameter processing: at thousands of notices per batch that is most of the cost.

_NOTICE_COLUMNS = ("id", "key", "event", "account_id", "line_id", "urgent", "channels",
                   "created_at")
_NOTICE_PG_TYPES = ("uuid", "varchar", "varchar", "uuid", "uuid", "boolean", "varchar",
                    "timestamptz")
_OUTBOX_COLUMNS = ("id", "kind", "dedupe_key", "account_id", "recipient", "subject", "body",
                   "payload", "state", "attempts", "next_attempt_at", "last_error",
                   "created_at")
_OUTBOX_PG_TYPES = ("uuid", "varchar", "varchar", "uuid", "varchar", "varchar", "text",
                    "text", "varchar", "integer", "timestamptz", "varchar", "timestamptz")


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _pg_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def _bulk_insert(
    session: AsyncSession, table: str, columns: Sequence[str], pg_types: Sequence[str],
    rows: Sequence[Mapping[str, Any]], conflict: str, *, returning: str | None = None,
    casts: Mapping[str, str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    names = ", ".join(columns)
    tail = f" ON CONFLICT ({conflict}) DO NOTHING" + (f" RETURNING {returning}" if returning
                                                        else "")
    if session.get_bind().dialect.name == "postgresql":
        arrays = ", ".join(f"CAST(:c{i} AS {t}[])" for i, t in enumerate(pg_types))
        picked = ", ".join(f"{c}::{(casts or {}).get(c, t)}" if c in (casts or {}) else c
                           for c, t in zip(columns, pg_types, strict=True))
        sql = (f"INSERT INTO {table} ({names}) SELECT {picked} "  # noqa: S608 - constants
               f"FROM unnest({arrays}) AS t({names}){tail}")
        params = {f"c{i}": [_pg_value(r[c]) for r in rows] for i, c in enumerate(columns)}
        return text(sql), params
    picked = ", ".join(f"value ->> {i}" for i in range(len(columns)))
    sql = (f"INSERT INTO {table} ({names}) SELECT {picked} "  # noqa: S608 - constants
           f"FROM json_each(:rows) WHERE true{tail}")
    data = json.dumps([[_sqlite_value(r[c]) for c in columns] for r in rows],
                      ensure_ascii=False)
    return text(sql), {"rows": data}


async def _insert_notices(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """``INSERT … ON CONFLICT (key) DO NOTHING RETURNING key``: the keys that were new."""
    stmt, params = _bulk_insert(session, "notices", _NOTICE_COLUMNS, _NOTICE_PG_TYPES, rows,
                                "key", returning="key")
    return set((await session.execute(stmt, params)).scalars().all())


_OUTBOX_SQLITE = text(
    f"INSERT INTO outbox ({', '.join(_OUTBOX_COLUMNS)}) "  # noqa: S608 - constants
    f"VALUES ({', '.join(':' + c for c in _OUTBOX_COLUMNS)}) ON CONFLICT (dedupe_key) DO NOTHING"
)


async def insert_outbox(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """The outbox rows: PostgreSQL one ``unnest`` statement; SQLite one ``executemany``
    (the driver binds the rows in C: cheaper than parsing a JSON document per column)."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(_OUTBOX_SQLITE, [
            {c: _sqlite_value(r[c]) for c in _OUTBOX_COLUMNS} for r in rows])
        return
    stmt, params = _bulk_insert(session, "outbox", _OUTBOX_COLUMNS, _OUTBOX_PG_TYPES, rows,
                                "dedupe_key", casts={"payload": "json"})
    await session.execute(stmt, params)


def sample_values(event: Event, language: str, settings: Settings) -> dict[str, str]:
    """The placeholders of ``event`` filled with its sample parameters (template previews)."""
    return placeholder_values(event, event.sample, language=language, settings=settings,
                              name="Li Lei" if language == "en" else "李雷",
                              msisdn="+8613800138000")


__all__ = [
    "CHANNELS",
    "COMMON_PLACEHOLDERS",
    "EVENTS",
    "LANGUAGES",
    "Event",
    "NoticeRequest",
    "Param",
    "notify",
    "notify_many",
    "render",
]
