"""Orders: create (idempotently), see, list, cancel; the guest top-up number check.

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
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.identity import mask_name, mask_phone, normalize_phone
from openmvno.accounts.models import Account, Role
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan, PlanKind
from openmvno.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized
from openmvno.formatting import Formatter
from openmvno.i18n import translate
from openmvno.lines import service as lines
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.lines.states import may_use_service
from openmvno.orders import states
from openmvno.orders.fulfilment import FulfilmentImpossible, fulfil
from openmvno.orders.models import Order, OrderKind, OrderState
from openmvno.orders.provisioning import provision
from openmvno.orders.refunds import refund
from openmvno.orders.texts import GUEST_TOPUP, WALLET_TOPUP, failure_reason
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.ratelimit import service as ratelimit
from openmvno.runtime import Runtime

MAIN_PLAN_KINDS = (PlanKind.data, PlanKind.voice, PlanKind.mixed)


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


async def guest_lookup(
    session: AsyncSession, rt: Runtime, msisdn: str, *, client: str
) -> dict[str, str]:
    """Confirm a number before a guest pays: the owner's masked name and the masked number.
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
    return {"msisdn": mask_phone(line.msisdn), "owner": mask_name(owner.name)}


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
        order.msisdn = line.msisdn
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


async def create(
    session: AsyncSession,
    rt: Runtime,
    *,
    account: Account | None,
    idempotency_key: str,
    body: dict[str, Any],
    language: str,
) -> tuple[Order, bool]:
    """Create an order once per ``(scope, Idempotency-Key)``; returns ``(order, created)``.
    The same key with the same body returns the first order; with another body, a 409."""
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
        return _same_request(existing, digest), False
    order = await _build(session, rt, account=account, body=body, language=language)
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
        return _same_request(existing, digest), False
    return order, True


def can_see(order: Order, account: Account | None) -> bool:
    """Owner or staff; a guest order (no account) is reachable by its unguessable id."""
    if order.account_id is None:
        return True
    if account is None:
        return False
    return order.account_id == account.id or account.role in (Role.agent, Role.admin)


async def get_visible(
    session: AsyncSession, order_id: uuid.UUID, account: Account | None
) -> Order:
    """An order the caller may see; anyone else's is "not found" (existence never leaks)."""
    order = await session.get(Order, order_id, populate_existing=True)
    if order is None or not can_see(order, account):
        raise NotFound("order_not_found", "There is no such order.")
    return order


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


async def attempts_for(session: AsyncSession, order_id: uuid.UUID) -> list[PaymentAttempt]:
    rows = await session.scalars(
        select(PaymentAttempt)
        .where(PaymentAttempt.order_id == order_id)
        .order_by(PaymentAttempt.created_at)
    )
    return list(rows.all())


async def cancel(session: AsyncSession, order: Order) -> Order:
    """Cancel an unpaid order (and its open payment attempts); once paid, a 409 saying why."""
    await states.transition(session, order, OrderState.cancelled, code="order_not_cancellable")
    await session.execute(
        update(PaymentAttempt)
        .where(
            PaymentAttempt.order_id == order.id,
            PaymentAttempt.state.in_([AttemptState.created, AttemptState.requires_action]),
        )
        .values(state=AttemptState.failed, failure_code="cancelled", settled_at=clock.now())
        .execution_options(synchronize_session="fetch")
    )
    return order


__all__ = [
    "MAIN_PLAN_KINDS",
    "FulfilmentImpossible",
    "attempts_for",
    "can_see",
    "cancel",
    "create",
    "failure_reason",
    "fulfil",
    "get_visible",
    "guest_line",
    "guest_lookup",
    "list_for_account",
    "provision",
    "refund",
    "request_hash",
]
