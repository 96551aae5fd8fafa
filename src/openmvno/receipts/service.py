"""Receipts: gapless sequential numbers, issued in the fulfilment transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from openmvno import clock
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.errors import NotFound
from openmvno.formatting import Formatter, to_operator
from openmvno.i18n import N_, translate
from openmvno.orders.models import Order
from openmvno.receipts.models import Receipt, Sequence

RECEIPT_SEQUENCE = "receipt"
_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

METHOD_NAMES = {
    "card": N_("Bank card"),
    "alipay": N_("Alipay"),
    "wechat_pay": N_("WeChat Pay"),
    "bank_transfer": N_("Bank transfer"),
    "wallet": N_("Wallet balance"),
    "free": N_("Free of charge"),
}


async def next_value(session: AsyncSession, name: str) -> int:
    """Take the next value of a named counter, gapless: the row stays locked by the
    ``UPDATE ... RETURNING`` until the transaction ends, and a rollback gives it back."""
    bump = (
        update(Sequence)
        .where(Sequence.name == name)
        .values(value=Sequence.value + 1)
        .returning(Sequence.value)
    )
    value = (await session.execute(bump)).scalar_one_or_none()
    if value is None:
        try:
            async with session.begin_nested():
                await session.execute(insert(Sequence).values(name=name, value=0))
        except IntegrityError:
            pass  # another transaction created it first
        value = (await session.execute(bump)).scalar_one()
    return int(value)


def format_number(year: int, value: int) -> str:
    """``R2026-000001``: the year of issue (in the operator's time zone: pass
    ``formatting.to_operator(now).year``) and the operator-wide sequence."""
    return f"R{year}-{value:06d}"


async def issue(
    session: AsyncSession,
    *,
    order: Order,
    buyer: str,
    msisdn: str | None,
    items: list[dict[str, Any]],
    payment_method: str,
) -> Receipt:
    """The receipt for a fulfilled order (one per order; a second call returns the first)."""
    existing = await session.scalar(select(Receipt).where(Receipt.order_id == order.id))
    if existing is not None:
        return existing
    now = clock.now()
    value = await next_value(session, RECEIPT_SEQUENCE)
    receipt = Receipt(
        number=format_number(to_operator(now).year, value),  # the operator's calendar year
        order_id=order.id,
        account_id=order.account_id,
        buyer=buyer[:100],
        msisdn=msisdn,
        items=items,
        total_minor=order.amount_minor,
        currency=order.currency,
        payment_method=payment_method,
        issued_at=now,
    )
    session.add(receipt)
    await session.flush()
    return receipt


async def list_for_account(
    session: AsyncSession, account_id: uuid.UUID, *, limit: int = 20, offset: int = 0
) -> tuple[list[Receipt], int]:
    """The account's receipts, newest first, and how many there are in all."""
    rows = await session.scalars(
        select(Receipt)
        .where(Receipt.account_id == account_id)
        .order_by(Receipt.issued_at.desc(), Receipt.number.desc())
        .limit(limit)
        .offset(offset)
    )
    total = await session.scalar(
        select(func.count()).select_from(Receipt).where(Receipt.account_id == account_id)
    )
    return list(rows.all()), int(total or 0)


def _not_found() -> NotFound:
    return NotFound("receipt_not_found", "There is no such receipt.")


async def get_visible(session: AsyncSession, receipt_id: uuid.UUID, account: Account) -> Receipt:
    """A receipt its owner (or staff) may see; anyone else gets "not found". A guest's
    receipt (no owner) is reached through the guest's order link (:func:`of_order`). Staff
    reading someone else's must be audited: see :func:`staff_reads` and :func:`record_view`."""
    receipt = await session.get(Receipt, receipt_id)
    staff = account.role in audit.STAFF_ROLES
    mine = receipt is not None and receipt.account_id is not None \
        and receipt.account_id == account.id
    if receipt is None or not (mine or staff):
        raise _not_found()
    return receipt


def staff_reads(receipt: Receipt, account: Account) -> bool:
    """True when staff open a receipt that is not their own (an audited read)."""
    return audit.acts_for_someone_else(account, receipt.account_id)


async def record_view(session: AsyncSession, receipt: Receipt, actor: Account) -> None:
    """Audit staff reading someone else's receipt (``receipt.view``; needs a writable
    transaction), naming whose it is: its buyer, or the account a guest's top-up credited."""
    whose = receipt.account_id or await session.scalar(
        select(Order.credited_account_id).where(Order.id == receipt.order_id)
    )
    await audit.staff_access(
        session, actor=actor, action="receipt.view", subject_type="receipt",
        subject_id=receipt.id, account_id=whose, data={"number": receipt.number},
    )


async def of_order(session: AsyncSession, order: Order) -> Receipt:
    """The receipt of an order the caller already reached (a guest through its link)."""
    receipt = await for_order(session, order.id)
    if receipt is None:
        raise _not_found()
    return receipt


async def for_order(session: AsyncSession, order_id: uuid.UUID) -> Receipt | None:
    return await session.scalar(select(Receipt).where(Receipt.order_id == order_id))


async def fill_numbers(session: AsyncSession, orders: Iterable[Order]) -> None:
    """Put the receipt's number into the loaded ``result`` of each order that names its
    receipt but not the number (the renewal batch numbers its receipts last, after the
    orders are written, and does not write the orders a second time): one SELECT for all
    of them, none when every order has its number. The orders are not marked changed."""
    missing = {
        uuid.UUID(str(o.result["receipt_id"])): o for o in orders
        if o.result and "receipt_id" in o.result and "receipt_number" not in o.result
    }
    if not missing:
        return
    rows = await session.execute(
        select(Receipt.id, Receipt.number).where(Receipt.id.in_(list(missing)))
    )
    for receipt_id, number in rows.all():
        order = missing[receipt_id]
        set_committed_value(order, "result", {**order.result, "receipt_number": number})


def item_name(item: dict[str, Any], language: str) -> str:
    return str(item.get("name_zh") if language == "zh-CN" else item.get("name_en"))


def method_name(method: str, language: str) -> str:
    return translate(language, METHOD_NAMES[method]) if method in METHOD_NAMES else method


def context(receipt: Receipt, *, language: str, operator: str) -> dict[str, Any]:
    """Everything a rendering (HTML or PDF) shows, already localised."""
    fmt = Formatter(language)

    def t(message: str, **params: Any) -> str:
        return translate(language, message, **params)

    return {
        "t": t,
        "lang": language,
        "operator": operator,
        "number": receipt.number,
        "issued": fmt.date(receipt.issued_at),
        "buyer": receipt.buyer,
        "msisdn": receipt.msisdn or "",
        "method": method_name(receipt.payment_method, language),
        "items": [
            {
                "name": item_name(i, language),
                "quantity": int(i.get("quantity", 1)),
                "amount": fmt.money(int(i["amount_minor"]), receipt.currency),
            }
            for i in receipt.items
        ],
        "total": fmt.money(receipt.total_minor, receipt.currency),
    }


def render_html(
    receipt: Receipt, *, language: str, operator: str, back: list[tuple[str, str]] | None = None,
    pdf_url: str | None = None,
) -> str:
    """A printable, self-contained HTML receipt; ``back``: (address, catalog message)
    links back to where the reader came from (not printed), ``pdf_url`` its PDF."""
    ctx = context(receipt, language=language, operator=operator)
    ctx["back"] = [(url, translate(language, label)) for url, label in back or []]
    ctx["pdf_url"] = pdf_url
    return _env.get_template("receipt.html").render(ctx)
