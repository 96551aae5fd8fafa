"""Orders: create (idempotently), see, list, cancel; the guest top-up number check.

Who reaches an order: its owner (by id), staff (by id, audited when it is someone
else's), and for a guest order (no owner) only the holder of its link token, given
once when the order is created (only its SHA-256 is stored). A guest top-up credits
the owner of the number confirmed at look-up, stored on the order.

The rest of the domain lives beside it, one job each, and is re-exported here so
``from openmvno.orders import service as orders`` keeps giving every public name:

- :mod:`.fulfilment` — carry out a paid order (grants, expiry stacking, receipt,
  provisioning job) and fail-and-refund when it cannot be carried out;
- :mod:`.notices` — the "order done" SMS and email;
- :mod:`.refunds` — staff refunds;
- :mod:`.provisioning` — the outbox handler that tells the network;
- :mod:`.texts` — failure reasons and top-up names; :mod:`.states` — the state machine.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.identity import mask_name, mask_phone, normalize_phone
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan, PlanKind
from openmvno.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized
from openmvno.formatting import Formatter
from openmvno.i18n import translate
from openmvno.lines import service as lines
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.lines.states import may_use_service
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind
from openmvno.orders import states
from openmvno.orders.fulfilment import FulfilmentImpossible, fulfil
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.orders.provisioning import provision
from openmvno.orders.refunds import refund
from openmvno.orders.texts import GUEST_TOPUP, WALLET_TOPUP, failure_reason
from openmvno.payments.models import AttemptState, PaymentAttempt, PaymentMethodKind
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime
from openmvno.security import keyed_digest, new_token, same, sha256

MAIN_PLAN_KINDS = (PlanKind.data, PlanKind.voice, PlanKind.mixed)
FREE = "free"
"""The ``provider`` of a zero-price order's attempt: nothing was paid, nothing to refund."""


def request_hash(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a request body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _order_number() -> str:
    return f"O{clock.now():%Y%m%d}{secrets.token_hex(5).upper()}"


def _require(body: dict[str, Any], field: str) -> Any:
    value = body.get(field)
    if value in (None, ""):
        raise InvalidInput(
            "field_required", "{field} is required for this kind of order.", field=field
        )
    return value


def _main_plan(plan: Plan) -> Plan:
    if plan.kind not in MAIN_PLAN_KINDS:
        raise InvalidInput(
            "plan_kind_mismatch", "The plan {code} cannot be bought this way.", code=plan.code
        )
    return plan


async def guest_line(session: AsyncSession, rt: Runtime, msisdn: str) -> Line:
    """The line a guest top-up goes to: it must exist, have an owner and not be terminated."""
    number = normalize_phone(msisdn, rt.settings.default_region)
    line = await session.scalar(select(Line).where(Line.msisdn == number))
    if line is None or line.account_id is None or line.state == LineState.terminated:
        raise NotFound("number_not_found", "No line in service has this number; check it.")
    return line


def confirmation(rt: Runtime, line: Line) -> str:
    """What a look-up showed, as an opaque keyed digest of the line, its number and its
    owner: sent back with the order, it proves the owner has not changed since."""
    value = f"guest-topup-confirm:{line.id}:{line.msisdn}:{line.account_id}"
    return keyed_digest(rt.secret_key, value)[:32]


async def guest_lookup(
    session: AsyncSession, rt: Runtime, msisdn: str, *, client: str
) -> dict[str, str]:
    """Confirm a number before a guest pays: the owner's masked name, the masked number and
    the ``confirmation`` to send with the order (so only this owner can be credited).
    Limited per client address, so numbers cannot be harvested for names."""
    await ratelimit.hit(
        session, scope="guest_lookup", key=client, limit=rt.settings.guest_lookups_per_hour,
        window=timedelta(hours=1),
    )
    try:
        line = await guest_line(session, rt, msisdn)
    except DomainError as exc:
        exc.keep_changes = True  # a miss counts too
        raise
    owner = await session.get(Account, line.account_id)
    assert owner is not None
    return {"msisdn": mask_phone(line.msisdn), "owner": mask_name(owner.name),
            "confirmation": confirmation(rt, line)}


async def _stock_available(session: AsyncSession) -> bool:
    found = await session.scalar(
        select(Line.id)
        .where(Line.kind == LineKind.esim, Line.state == LineState.inventory,
               Line.account_id.is_(None))
        .limit(1)
    )
    return found is not None


async def _build(
    session: AsyncSession, rt: Runtime, *, account: Account | None, body: dict[str, Any],
    language: str,
) -> Order:
    kind = OrderKind(_require(body, "kind"))
    order = Order(kind=kind, number=_order_number(), account_id=account.id if account else None)
    if kind is OrderKind.guest_topup:
        line = await guest_line(session, rt, str(_require(body, "msisdn")))
        confirmed = body.get("confirmation")
        if confirmed is not None and not same(str(confirmed), confirmation(rt, line)):
            raise Conflict(
                "number_owner_changed",
                "The owner of this number has changed since you checked it; check the "
                "number again.",
            )
        order.msisdn = line.msisdn
        order.line_id = line.id
        order.credited_account_id = line.account_id
        order.amount_minor = _topup_amount(rt, body)
        order.currency = rt.settings.default_currency
        order.description = translate(language, GUEST_TOPUP, msisdn=mask_phone(line.msisdn))
        return order
    if account is None:
        raise Unauthorized("not_authenticated", "Please log in.")
    if kind is OrderKind.topup:
        order.amount_minor = _topup_amount(rt, body)
        order.currency = rt.settings.default_currency
        order.description = translate(language, WALLET_TOPUP)
        return order
    plan = await catalog.get_sellable_plan(session, str(_require(body, "plan_code")))
    if kind is OrderKind.new_line:
        _main_plan(plan)
        if not await _stock_available(session):
            raise Conflict("out_of_stock", "No new lines are available right now; try again later.")
    else:
        line_id = uuid.UUID(str(_require(body, "line_id")))
        line = await lines.get_owned(session, account_id=account.id, line_id=line_id)
        if line.state == LineState.terminated:
            raise Conflict("line_terminated", "This line is terminated and cannot be renewed.")
        if kind is OrderKind.plan:
            _main_plan(plan)
        else:
            if plan.kind != PlanKind.addon:
                raise InvalidInput(
                    "plan_kind_mismatch", "The plan {code} cannot be bought this way.",
                    code=plan.code,
                )
            if not may_use_service(line):
                raise Conflict(
                    "line_not_active", "Add-ons need a plan in service; renew the plan first."
                )
        order.line_id = line.id
        order.msisdn = line.msisdn
    order.plan_id = plan.id
    order.amount_minor = plan.price_minor
    order.currency = plan.currency
    order.description = plan.name(language)[:200]
    return order


def _topup_amount(rt: Runtime, body: dict[str, Any]) -> int:
    amount = int(_require(body, "amount_minor"))
    low, high = rt.settings.topup_min_minor, rt.settings.topup_max_minor
    if not low <= amount <= high:
        fmt = Formatter(rt.settings.default_language)
        cur = rt.settings.default_currency
        raise InvalidInput(
            "topup_amount_out_of_range", "A top-up must be between {min} and {max}.",
            min=fmt.money(low, cur), max=fmt.money(high, cur),
        )
    return amount


async def _by_key(session: AsyncSession, scope: str, key: str) -> Order | None:
    return await session.scalar(
        select(Order)
        .where(Order.idempotency_scope == scope, Order.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


def _same_request(order: Order, digest: str) -> Order:
    if order.request_hash != digest:
        raise Conflict(
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request; use a new key.",
        )
    return order


def new_guest_link() -> str:
    """A guest order's link token (256 random bits, URL-safe)."""
    return new_token()


def link_hash(token: str) -> str:
    return sha256(token)


def _valid_link(token: str) -> bool:
    return 32 <= len(token) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_")
                                           for c in token)


def link_matches(order: Order, token: str | None) -> bool:
    """True if ``token`` is the link of this guest order."""
    return bool(token and order.guest_link_hash
                and same(link_hash(token), order.guest_link_hash))


async def create(
    session: AsyncSession,
    rt: Runtime,
    *,
    account: Account | None,
    idempotency_key: str,
    body: dict[str, Any],
    language: str,
    guest_link: str | None = None,
) -> tuple[Order, bool]:
    """Create an order once per ``(scope, Idempotency-Key)``; returns ``(order, created)``.
    The same key with the same body returns the first order; with another body, a 409.

    A guest order (no account) needs ``guest_link``, a token from :func:`new_guest_link`
    that the caller hands to the guest: its hash is stored and it is the only way to the
    order. A guest replay returns the first order only with the same link (a 409
    ``guest_order_exists`` otherwise): the link is never given out again."""
    if not idempotency_key or len(idempotency_key) > 128:
        raise InvalidInput(
            "idempotency_key_required", "Send an Idempotency-Key header (up to 128 characters)."
        )
    body = {k: v for k, v in body.items() if v is not None}
    digest = request_hash(body)
    if account is not None:
        scope = str(account.id)
    elif body.get("kind") != OrderKind.guest_topup.value:
        raise Unauthorized("not_authenticated", "Please log in.")
    else:
        number = normalize_phone(str(_require(body, "msisdn")), rt.settings.default_region)
        scope = f"guest:{number}"
    existing = await _by_key(session, scope, idempotency_key)
    if existing is not None:
        return _replay(existing, digest, guest=account is None, guest_link=guest_link), False
    order = await _build(session, rt, account=account, body=body, language=language)
    if account is None:
        if guest_link is None or not _valid_link(guest_link):
            raise InvalidInput(
                "guest_link_invalid", "This form has expired; reload the page and try again."
            )
        order.guest_link_hash = link_hash(guest_link)
    order.idempotency_scope = scope
    order.idempotency_key = idempotency_key
    order.request_hash = digest
    order.state = OrderState.pending_payment
    order.result = {}
    try:
        async with session.begin_nested():
            session.add(order)
            await session.flush()
    except IntegrityError:
        existing = await _by_key(session, scope, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest, guest=account is None, guest_link=guest_link), False
    if order.amount_minor == 0:
        await fulfil_free(session, rt, order)  # a free plan: nothing to pay
    return order, True


def _replay(order: Order, digest: str, *, guest: bool, guest_link: str | None) -> Order:
    """The first order again, for a replayed create. A guest replay shows the order only
    to the holder of its link (the same form sent twice), never to whoever guesses the
    number and key."""
    _same_request(order, digest)
    if guest and not link_matches(order, guest_link):
        raise Conflict(
            "guest_order_exists",
            "This top-up was already created; open it with the link you were given, or "
            "start a new top-up.",
        )
    return order


def can_see(order: Order, account: Account | None) -> bool:
    """By id: the owner, or staff. A guest order (no owner) only staff; a guest reaches it
    through its link (:func:`get_by_link`) and never by id."""
    if account is None:
        return False
    if order.account_id is not None and order.account_id == account.id:
        return True
    return account.role in audit.STAFF_ROLES


def _not_found() -> NotFound:
    return NotFound("order_not_found", "There is no such order.")


async def get_by_link(session: AsyncSession, token: str) -> Order:
    """The guest order whose link token this is, else "not found"."""
    if not _valid_link(token):
        raise _not_found()
    order = await session.scalar(
        select(Order)
        .where(Order.guest_link_hash == link_hash(token))
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise _not_found()
    return order


def whose(order: Order) -> uuid.UUID | None:
    """The subscriber an order's data is about: its buyer, or the account a guest credits."""
    return order.account_id or order.credited_account_id


async def get_visible(
    session: AsyncSession, order_id: uuid.UUID | None, account: Account | None, *,
    guest_link: str | None = None, audit_as: str | None = None,
) -> Order:
    """An order the caller may see; anyone else's is "not found" (existence never leaks).

    ``guest_link``: the order is found by its link token instead (``order_id``, if given,
    must be that order's). ``audit_as``: the audit action (``order.cancel``,
    ``payment.start``) recorded when staff reach someone else's order, in this (writable)
    transaction; a read-only request records its read with :func:`record_access`."""
    if guest_link is not None:
        linked = await get_by_link(session, guest_link)
        if order_id is not None and linked.id != order_id:
            raise _not_found()
        return linked
    order = await session.get(Order, order_id, populate_existing=True) if order_id else None
    if order is None or not can_see(order, account):
        raise _not_found()
    if audit_as is not None:
        await record_access(session, order, account, audit_as)
    return order


def staff_reaches(order: Order, account: Account | None) -> bool:
    """True when staff reach an order that is not their own (an audited access)."""
    return audit.acts_for_someone_else(account, order.account_id)


async def record_access(
    session: AsyncSession, order: Order, actor: Account | None, action: str
) -> None:
    """Audit staff reaching someone else's order (who, what, whose, when); nothing for a
    subscriber's own. Needs a writable transaction."""
    await audit.staff_access(
        session, actor=actor, action=action, subject_type="order", subject_id=order.id,
        account_id=whose(order), data={"number": order.number},
    )


async def list_for_account(
    session: AsyncSession, account_id: uuid.UUID, *, limit: int = 20, offset: int = 0
) -> tuple[list[Order], int]:
    """My orders (renewal history), newest first, and the total count."""
    rows = await session.scalars(
        select(Order)
        .where(Order.account_id == account_id)
        .order_by(Order.created_at.desc(), Order.number.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(
        select(func.count()).select_from(Order).where(Order.account_id == account_id)
    )
    return list(rows.all()), int(total or 0)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of a subscriber's order history."""

    order: Order
    from_someone_else: bool
    """A top-up of one of the subscriber's numbers paid by someone else (a guest or
    another account): it credited their wallet; its receipt is the payer's."""
    buyer: str
    """Who paid, masked (``张*明``); empty for a guest without an account."""


CREDITED_SHOWN = (OrderState.fulfilled, OrderState.refunded)
"""Top-ups from others shown in the credited owner's history: those that reached them."""


async def history_for_account(
    session: AsyncSession, account_id: uuid.UUID, *, limit: int = 20, offset: int = 0
) -> tuple[list[HistoryEntry], int]:
    """My orders, and top-ups of my numbers that others paid (those that reached my
    wallet), newest first, with the total count: two statements."""
    mine = or_(
        Order.account_id == account_id,
        and_(Order.credited_account_id == account_id, Order.state.in_(CREDITED_SHOWN)),
    )
    rows = await session.execute(
        select(Order, Account.name)
        .outerjoin(Account, Account.id == Order.account_id)
        .where(mine)
        .order_by(Order.created_at.desc(), Order.number.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(select(func.count()).select_from(Order).where(mine))
    entries = [
        HistoryEntry(order, order.account_id != account_id,
                     mask_name(name) if name and order.account_id != account_id else "")
        for order, name in rows.all()
    ]
    return entries, int(total or 0)


async def attempts_for(session: AsyncSession, order_id: uuid.UUID) -> list[PaymentAttempt]:
    rows = await session.scalars(
        select(PaymentAttempt)
        .where(PaymentAttempt.order_id == order_id)
        .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
    )
    return list(rows.all())


async def attempts_by_order(
    session: AsyncSession, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[PaymentAttempt]]:
    """The payment attempts of many orders in one query (each order's oldest first);
    every id is a key, with an empty list for an order nobody tried to pay."""
    found: dict[uuid.UUID, list[PaymentAttempt]] = {i: [] for i in order_ids}
    if order_ids:
        rows = await session.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.order_id.in_(order_ids))
            .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
        )
        for attempt in rows:
            if attempt.order_id is not None:  # always here; saved-card charges have none
                found[attempt.order_id].append(attempt)
    return found


async def cancel(session: AsyncSession, order: Order) -> Order:
    """Cancel an unpaid order and its open payment attempts; once paid, a 409 saying why.
    Each open provider payment is stopped at the provider by the worker (an outbox
    ``payment_cancel`` job), so the payer can no longer pay it; money that still arrives
    is refunded automatically (see :mod:`openmvno.payments.service`)."""
    await states.transition(session, order, OrderState.cancelled, code="order_not_cancellable")
    closed = await session.execute(
        update(PaymentAttempt)
        .where(
            PaymentAttempt.order_id == order.id,
            PaymentAttempt.state.in_([AttemptState.created, AttemptState.requires_action]),
        )
        .values(state=AttemptState.failed, failure_code="cancelled", settled_at=clock.now())
        .returning(PaymentAttempt.id, PaymentAttempt.provider, PaymentAttempt.provider_ref)
        .execution_options(synchronize_session="fetch")
    )
    for attempt_id, provider, reference in closed.all():
        # No reference yet: the provider is still creating it, and the payment path
        # queues the cancel when its answer is recorded.
        if reference and provider not in ("wallet", FREE):
            await notifications.enqueue(
                session, kind=OutboxKind.payment_cancel, dedupe_key=f"payment-cancel:{attempt_id}",
                recipient=reference, account_id=order.account_id,
                payload={"attempt_id": str(attempt_id)},
            )
    return order


async def fulfil_free(session: AsyncSession, rt: Runtime, order: Order) -> PaymentAttempt:
    """A zero-price order needs no payment: record a ``free`` attempt and fulfil it now,
    in the caller's transaction (nothing to refund if it cannot be carried out)."""
    attempt = PaymentAttempt(
        order_id=order.id, account_id=order.account_id, provider=FREE,
        method=PaymentMethodKind.free, amount_minor=0, currency=order.currency,
        state=AttemptState.succeeded, settled_at=clock.now(), next_action={},
    )
    session.add(attempt)
    await states.transition(session, order, OrderState.paid, code="order_not_payable")
    await fulfil(session, rt, order, attempt=attempt)
    if order.state == OrderState.failed:
        order.result = {**order.result, "refund_due": False}
        await session.flush()
    return attempt


__all__ = [
    "FREE",
    "MAIN_PLAN_KINDS",
    "FulfilmentImpossible",
    "HistoryEntry",
    "attempts_by_order",
    "attempts_for",
    "can_see",
    "cancel",
    "confirmation",
    "create",
    "failure_reason",
    "fulfil",
    "fulfil_free",
    "get_by_link",
    "get_visible",
    "guest_line",
    "guest_lookup",
    "history_for_account",
    "link_hash",
    "link_matches",
    "list_for_account",
    "new_guest_link",
    "provision",
    "record_access",
    "refund",
    "request_hash",
    "staff_reaches",
    "whose",
]
