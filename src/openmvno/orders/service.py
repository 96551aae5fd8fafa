"""Orders: create (idempotently), list, cancel, fulfil, refund; provisioning jobs.

Fulfilment runs in the transaction that records the payment's success, so a paid
order is never left without its plan, top-up, receipt, provisioning job and notice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.accounts.identity import mask_name, mask_phone, normalize_phone
from openmvno.accounts.models import Account, Role
from openmvno.adapters.provisioning import ProvisioningFailed, ProvisioningRequest, provisioner
from openmvno.audit import service as audit
from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.ledger import service as ledger
from openmvno.ledger.models import BalanceEntry, BucketKind, EntryReason
from openmvno.lines import service as lines
from openmvno.lines import states as line_states
from openmvno.lines.esim import activation_code
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.notifications import service as notifications
from openmvno.notifications.models import OutboxKind, OutboxMessage
from openmvno.orders import states
from openmvno.orders.models import Order, OrderKind, OrderState, ProvisioningState
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.ratelimit import service as ratelimit
from openmvno.receipts import service as receipts
from openmvno.runtime import Runtime

log = logging.getLogger("openmvno.orders")

MAIN_PLAN_KINDS = (PlanKind.data, PlanKind.voice, PlanKind.mixed)
NEEDS_PROVISIONING = (OrderKind.new_line, OrderKind.plan, OrderKind.addon)

FAILURE_REASONS: dict[str, str] = {
    "insufficient_funds": N_("The payment was refused: not enough funds. Try another method."),
    "limit_exceeded": N_("The payment was refused: the card limit is reached. "
                         "Try another method."),
    "declined": N_("The payment was declined by the bank. Try another method."),
    "expired": N_("The payment was not completed in time. Try again."),
    "cancelled": N_("The payment was cancelled."),
    "authentication_failed": N_("The card's security check (3-D Secure) was not passed. "
                                "Try again or use another method."),
    "provider_unavailable": N_("The payment service did not answer; nothing was charged. "
                               "Try again or use another method."),
    "amount_mismatch": N_("The amount paid does not match the order; our staff will check it "
                          "and refund the payment."),
    "out_of_stock": N_("No new line was available after payment; the payment will be "
                       "refunded."),
    "line_unavailable": N_("The line can no longer take this order; the payment will be "
                           "refunded."),
}
UNKNOWN_FAILURE = N_("The payment failed ({code}). Try another method.")
WALLET_TOPUP = N_("Wallet top-up")
GUEST_TOPUP = N_("Top-up for {msisdn}")


def failure_reason(language: str, code: str | None) -> str | None:
    """The localised sentence for a failure code (``None`` when there is no failure)."""
    if not code:
        return None
    message = FAILURE_REASONS.get(code)
    if message is None:
        return translate(language, UNKNOWN_FAILURE, code=code)
    return translate(language, message)


class FulfilmentImpossible(Exception):
    """The order was paid but cannot be carried out; it fails and is refunded."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


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


def _line_is_live(line: Line) -> bool:
    return line.state == LineState.active and (
        line.expires_at is None or line.expires_at > clock.now()
    )


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
            if not _line_is_live(line):
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


# --- fulfilment -----------------------------------------------------------------------


async def _claim_esim(session: AsyncSession, account_id: uuid.UUID) -> Line:
    """A stock eSIM for the buyer (``lines.claim_inventory`` is race-safe); none left
    means the paid order cannot be carried out."""
    try:
        async with session.begin_nested():
            return await lines.claim_inventory(session, account_id=account_id)
    except Conflict as exc:
        raise FulfilmentImpossible("out_of_stock") from exc


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def _grant(
    session: AsyncSession, rt: Runtime, order: Order, line: Line, plan: Plan
) -> dict[str, Any]:
    """Grant the plan's allowances on the line. Plans stack: renewing before expiry adds a
    period after the current expiry (new buckets valid from then); after expiry, from now.
    Add-ons never move the expiry: their buckets last ``validity_days`` from now but never
    beyond the line's expiry (an add-on with validity 0 lasts until the line's expiry)."""
    now = clock.now()
    previous = line.expires_at
    if order.kind is OrderKind.addon:
        if not _line_is_live(line):
            raise FulfilmentImpossible("line_unavailable")
        valid_from = now
        until = now + timedelta(days=plan.validity_days) if plan.validity_days else previous
        if previous is not None and (until is None or until > previous):
            until = previous
        priority = rt.settings.addon_priority
    else:
        valid_from = previous if previous is not None and previous > now else now
        until = valid_from + timedelta(days=plan.validity_days)
        priority = 100
    assert line.account_id is not None
    buckets = await ledger.grant_plan(
        session, account_id=line.account_id, line_id=line.id, plan=plan, order_id=order.id,
        valid_from=valid_from, valid_until=until, key=f"order:{order.id}:grant",
        priority=priority,
    )
    if order.kind is not OrderKind.addon:
        line.expires_at = until
        line.plan_id = plan.id
        if line.state != LineState.active:
            await line_states.transition(
                session, line, LineState.active, f"order {order.number} paid"
            )
    await session.flush()
    return {
        "line_id": str(line.id),
        "msisdn": line.msisdn,
        "plan_code": plan.code,
        "previous_expires_at": _iso(previous),
        "expires_at": _iso(line.expires_at),
        "granted": [
            {"kind": BucketKind(b.kind).value, "amount": b.initial,
             "valid_from": _iso(b.valid_from), "valid_until": _iso(b.valid_until)}
            for b in buckets
        ],
    }


async def _carry_out(
    session: AsyncSession, rt: Runtime, order: Order
) -> tuple[dict[str, Any], Line | None, Plan | None]:
    plan = await session.get(Plan, order.plan_id) if order.plan_id else None
    if order.kind in (OrderKind.topup, OrderKind.guest_topup):
        if order.kind is OrderKind.topup:
            assert order.account_id is not None
            owner_id = order.account_id
            target = None
        else:
            target = await session.scalar(select(Line).where(Line.msisdn == order.msisdn))
            if target is None or target.account_id is None or target.state == LineState.terminated:
                raise FulfilmentImpossible("line_unavailable")
            owner_id = target.account_id
        wallet = await ledger.credit_wallet(
            session, account_id=owner_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.topup,
            key=f"order:{order.id}:topup", order_id=order.id, memo=order.number,
        )
        result: dict[str, Any] = {"credited_minor": order.amount_minor, "currency": order.currency}
        if order.kind is OrderKind.topup:
            result["wallet_balance_minor"] = wallet.remaining
        else:
            result["msisdn"] = mask_phone(order.msisdn or "")
        return result, target, None
    assert plan is not None
    assert order.account_id is not None
    if order.kind is OrderKind.new_line:
        line = await _claim_esim(session, order.account_id)
        order.line_id = line.id
        order.msisdn = line.msisdn
    else:
        found = await session.get(Line, order.line_id, with_for_update=True,
                                  populate_existing=True)
        if (
            found is None
            or found.state == LineState.terminated
            or found.account_id != order.account_id  # unbound or bound elsewhere since
        ):
            raise FulfilmentImpossible("line_unavailable")
        line = found
    result = await _grant(session, rt, order, line, plan)
    if line.kind == LineKind.esim and line.esim_matching_id:
        result["activation_code"] = activation_code(rt, line)
    return result, line, plan


async def fulfil(
    session: AsyncSession, rt: Runtime, order: Order, *, attempt: PaymentAttempt
) -> Order:
    """Carry out a just-paid order in the caller's transaction: grant the plan or credit the
    wallet, move the line back to active, issue the receipt, queue provisioning and the
    success notice. If it cannot be carried out the order fails and the payment is refunded
    (wallet: at once; provider: marked ``refund_due`` for staff)."""
    try:
        async with session.begin_nested():
            result, line, plan = await _carry_out(session, rt, order)
    except FulfilmentImpossible as exc:
        return await _fail_paid(session, rt, order, attempt, exc.code)
    buyer = await session.get(Account, order.account_id) if order.account_id else None
    items = [_item(order, plan)]
    receipt = await receipts.issue(
        session, order=order, buyer=buyer.name if buyer else "", msisdn=order.msisdn,
        items=items, payment_method=str(attempt.method),
    )
    result.update(receipt_id=str(receipt.id), receipt_number=receipt.number)
    provisioning = ProvisioningState.not_needed
    if order.kind in NEEDS_PROVISIONING and line is not None:
        provisioning = ProvisioningState.pending
        await notifications.enqueue(
            session, kind=OutboxKind.provision, dedupe_key=f"provision:{order.id}",
            recipient=line.msisdn, account_id=order.account_id,
            payload={"order_id": str(order.id)},
        )
    await states.transition(
        session, order, OrderState.fulfilled, result=result, provisioning=provisioning,
        failure_code=None,
    )
    await _notify(session, rt, order, buyer, plan)
    return order


def _item(order: Order, plan: Plan | None) -> dict[str, Any]:
    if plan is not None:
        names: dict[str, str | None] = {
            "name_zh": plan.name_zh, "name_en": plan.name_en, "code": plan.code,
        }
    else:
        message = WALLET_TOPUP if order.kind is OrderKind.topup else GUEST_TOPUP
        masked = mask_phone(order.msisdn or "")
        names = {"name_zh": translate("zh-CN", message, msisdn=masked),
                 "name_en": translate("en", message, msisdn=masked), "code": None}
    return {**names, "quantity": 1, "amount_minor": order.amount_minor}


async def _fail_paid(
    session: AsyncSession, rt: Runtime, order: Order, attempt: PaymentAttempt, code: str
) -> Order:
    result: dict[str, Any] = {"refund_due": True}
    if attempt.method == "wallet" and order.account_id is not None:
        await ledger.credit_wallet(
            session, account_id=order.account_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.refund,
            key=f"order:{order.id}:refund", order_id=order.id, memo=order.number,
        )
        result = {"refund_due": False, "refunded_to": "wallet"}
    await states.transition(session, order, OrderState.failed, failure_code=code, result=result)
    log.warning("order failed after payment", extra={"order": order.number, "code": code})
    return order


SUCCESS_PLAN = N_("{operator}: order {number} is done. {plan} is on {msisdn} until {expiry}.")
SUCCESS_ADDON = N_("{operator}: order {number} is done. Add-on {plan} is on {msisdn}.")
SUCCESS_TOPUP = N_("{operator}: {amount} was added to your wallet. Balance: {balance}.")
SUCCESS_GUEST = N_("{operator}: {amount} was added to the wallet of {msisdn}.")
SUCCESS_SUBJECT = N_("Your order {number} is complete")


async def _notify(
    session: AsyncSession, rt: Runtime, order: Order, buyer: Account | None, plan: Plan | None
) -> None:
    language = buyer.language if buyer else rt.settings.default_language
    fmt = Formatter(language)
    r = order.result
    params: dict[str, Any] = {
        "operator": rt.settings.operator_name, "number": order.number,
        "amount": fmt.money(order.amount_minor, order.currency),
        "msisdn": order.msisdn or "", "plan": plan.name(language) if plan else "",
    }
    if order.kind is OrderKind.topup:
        balance = fmt.money(int(r.get("wallet_balance_minor", 0)), order.currency)
        body = translate(language, SUCCESS_TOPUP, balance=balance, **params)
    elif order.kind is OrderKind.guest_topup:
        params["msisdn"] = mask_phone(order.msisdn or "")
        body = translate(language, SUCCESS_GUEST, **params)
    elif order.kind is OrderKind.addon:
        body = translate(language, SUCCESS_ADDON, **params)
    else:
        expiry = r.get("expires_at")
        when = fmt.date(datetime.fromisoformat(expiry)) if expiry else "—"
        body = translate(language, SUCCESS_PLAN, expiry=when, **params)
    phone = buyer.phone if buyer else order.msisdn
    if order.kind is OrderKind.guest_topup:
        phone = order.msisdn
    if phone:
        await notifications.send_sms(
            session, to=phone, body=body, dedupe_key=f"order-done-sms:{order.id}",
            account_id=order.account_id,
        )
    if buyer is not None and buyer.email:
        await notifications.send_email(
            session, to=buyer.email, body=body, dedupe_key=f"order-done-email:{order.id}",
            subject=translate(language, SUCCESS_SUBJECT, number=order.number),
            account_id=order.account_id,
        )


# --- refunds --------------------------------------------------------------------------


async def refund(
    session: AsyncSession, rt: Runtime, order: Order, *, actor: Account, reason: str
) -> Order:
    """Staff: undo a fulfilled (or failed-after-payment) order. What the order granted is
    zeroed (a wallet top-up is taken back from the wallet), the payer is credited: a
    wallet payment goes back to the wallet; a provider payment is recorded as owed
    (``result.refund``) — the provider refund call itself is not in the port yet."""
    state = OrderState(order.state)
    if not states.can_transition(state, OrderState.refunded):
        raise Conflict("order_not_refundable", states.WHY_NOT[state])
    paid = await _paying_attempt(session, order)
    result = dict(order.result)
    if state is OrderState.fulfilled:
        if order.kind in (OrderKind.topup, OrderKind.guest_topup):
            credited = await _credited_account(session, order)
            if credited is not None:
                await ledger.debit_wallet(
                    session, account_id=credited, currency=order.currency,
                    amount_minor=order.amount_minor, reason=EntryReason.refund,
                    key=f"order:{order.id}:revoke", order_id=order.id, memo=order.number,
                )
        else:
            result["revoked_buckets"] = await ledger.revoke_order_grants(
                session, order_id=order.id, key=f"order:{order.id}:revoke"
            )
            await _undo_expiry(session, order)
    if paid is not None and paid.method == "wallet" and order.account_id is not None:
        await ledger.credit_wallet(
            session, account_id=order.account_id, currency=order.currency,
            amount_minor=order.amount_minor, reason=EntryReason.refund,
            key=f"order:{order.id}:refund", order_id=order.id, memo=order.number,
        )
        result["refund"] = {"to": "wallet", "amount_minor": order.amount_minor}
    elif paid is not None and not result.get("refunded_to"):
        # TODO(payments port): call the provider's refund API; until then staff refund by hand.
        result["refund"] = {
            "to": "provider", "provider": paid.provider, "reference": paid.provider_ref,
            "amount_minor": order.amount_minor, "status": "to_refund_at_provider",
        }
    result["refund_due"] = False
    await audit.record(
        session, actor=actor, action="order.refund", subject_type="order", subject_id=order.id,
        reason=reason, data={"number": order.number, "amount_minor": order.amount_minor},
    )
    await states.transition(session, order, OrderState.refunded, result=result)
    return order


async def _paying_attempt(session: AsyncSession, order: Order) -> PaymentAttempt | None:
    """The attempt that paid the order; a late duplicate success (``refund_due``, listed
    in ``result.refund_due_attempts``) is owed back separately and is never this one."""
    return await session.scalar(
        select(PaymentAttempt)
        .where(
            PaymentAttempt.order_id == order.id,
            PaymentAttempt.state == AttemptState.succeeded,
            or_(PaymentAttempt.failure_code.is_(None),
                PaymentAttempt.failure_code != "refund_due"),
        )
        .order_by(PaymentAttempt.settled_at, PaymentAttempt.created_at)
        .limit(1)
    )


async def _credited_account(session: AsyncSession, order: Order) -> uuid.UUID | None:
    """The account whose wallet a top-up credited (from its ledger entry: the number of a
    guest top-up may have changed hands since)."""
    return await session.scalar(
        select(BalanceEntry.account_id).where(
            BalanceEntry.idempotency_key == f"order:{order.id}:topup"
        )
    )


async def _undo_expiry(session: AsyncSession, order: Order) -> None:
    """Give back the period a refunded plan added, unless a later renewal moved it again."""
    if order.kind is OrderKind.addon or order.line_id is None:
        return
    line = await session.get(Line, order.line_id)
    given = order.result.get("expires_at")
    if line is None or given is None or line.expires_at is None:
        return
    if line.expires_at == datetime.fromisoformat(given):
        before = order.result.get("previous_expires_at")
        line.expires_at = datetime.fromisoformat(before) if before else clock.now()


# --- provisioning job -----------------------------------------------------------------


async def provision(rt: Runtime, message: OutboxMessage) -> str:
    """Outbox handler for ``OutboxKind.provision``: tell the network, then record the
    outcome on the order (``provisioning`` done / failed, visible to subscriber and agent).
    A failure raises, so the worker retries with backoff."""
    order_id = uuid.UUID(str(message.payload["order_id"]))
    async with unit_of_work(rt.sessions) as session:
        order = await session.get(Order, order_id)
        if order is None:
            return "order gone"
        line = await session.get(Line, order.line_id) if order.line_id else None
        plan = await session.get(Plan, order.plan_id) if order.plan_id else None
        request = ProvisioningRequest(
            order_id=order.id, kind=OrderKind(order.kind).value, line_id=order.line_id,
            iccid=line.iccid if line else None, msisdn=line.msisdn if line else None,
            plan_code=plan.code if plan else None,
        )
    try:
        reference = await provisioner(rt.settings).provision(request)
    except ProvisioningFailed as exc:
        await _set_provisioning(rt, order_id, ProvisioningState.failed, error=str(exc))
        raise
    await _set_provisioning(rt, order_id, ProvisioningState.done, reference=reference)
    return reference


async def _set_provisioning(
    rt: Runtime, order_id: uuid.UUID, state: ProvisioningState, *, reference: str = "",
    error: str = "",
) -> None:
    async with unit_of_work(rt.sessions) as session:
        order = await session.get(Order, order_id)
        if order is None:
            return
        order.provisioning = state
        extra = {"provisioning_ref": reference} if reference else {"provisioning_error": error}
        order.result = {**order.result, **extra}


__all__ = [
    "FulfilmentImpossible",
    "cancel",
    "create",
    "failure_reason",
    "fulfil",
    "get_visible",
    "guest_lookup",
    "list_for_account",
    "refund",
]
