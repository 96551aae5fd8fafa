"""Find a caller's account by what they can tell the agent: a phone number, ICCID, device
serial, email, order number or receipt number. Results carry masked personal data only;
showing a field in full is :func:`reveal` (an audited action)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.identity import mask_name, mask_phone, normalize_email, normalize_phone
from openmvno.accounts.models import Account, Role
from openmvno.audit import service as audit
from openmvno.errors import InvalidInput, NotFound
from openmvno.lines.identifiers import normalize_token
from openmvno.lines.models import Line
from openmvno.orders.models import Order
from openmvno.receipts.models import Receipt
from openmvno.runtime import Runtime

REVEALABLE = ("name", "phone", "email")


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return ""
    user, _, domain = email.partition("@")
    return (user[:1] + "***@" + domain) if user else "***@" + domain


@dataclass
class Found:
    account_id: uuid.UUID
    name: str
    phone: str
    email: str
    matched: str
    """What the query matched: phone, iccid, serial, email, order, receipt."""


def masked(account: Account, matched: str = "") -> Found:
    return Found(
        account.id,
        mask_name(account.name),
        mask_phone(account.phone or ""),
        mask_email(account.email),
        matched,
    )


async def search(session: AsyncSession, rt: Runtime, query: str) -> list[Found]:
    """Subscriber accounts the query names (at most 20)."""
    q = query.strip()
    if not q:
        raise InvalidInput(
            "search_empty",
            "Type a phone number, ICCID, device serial, email, order or receipt number.",
        )
    hits: dict[uuid.UUID, str] = {}

    def add(ids: list[uuid.UUID | None], how: str) -> None:
        for i in ids:
            if i is not None and i not in hits:
                hits[i] = how

    if "@" in q:
        try:
            mail = normalize_email(q)
        except Exception:  # noqa: BLE001 - not an email: nothing matches it
            mail = ""
        if mail:
            add(
                list(
                    (await session.scalars(select(Account.id).where(Account.email == mail))).all()
                ),
                "email",
            )
    else:
        try:
            phone = normalize_phone(q, rt.settings.default_region)
        except Exception:  # noqa: BLE001 - not a phone number
            phone = ""
        if phone:
            add(
                list(
                    (await session.scalars(select(Account.id).where(Account.phone == phone))).all()
                ),
                "phone",
            )
            add(
                list(
                    (
                        await session.scalars(select(Line.account_id).where(Line.msisdn == phone))
                    ).all()
                ),
                "phone",
            )
        token = normalize_token(q)
        if token:
            add(
                list(
                    (
                        await session.scalars(select(Line.account_id).where(Line.iccid == token))
                    ).all()
                ),
                "iccid",
            )
            add(
                list(
                    (
                        await session.scalars(
                            select(Line.account_id).where(Line.device_serial == token)
                        )
                    ).all()
                ),
                "serial",
            )
            rows = (
                await session.execute(
                    select(Order.account_id, Order.credited_account_id).where(Order.number == token)
                )
            ).all()
            add([r[0] or r[1] for r in rows], "order")
            add(
                list(
                    (
                        await session.scalars(
                            select(Receipt.account_id).where(Receipt.number == token)
                        )
                    ).all()
                ),
                "receipt",
            )
    if not hits:
        return []
    accounts = (
        await session.scalars(
            select(Account)
            .where(Account.id.in_(list(hits)), Account.role == Role.subscriber)
            .limit(20)
        )
    ).all()
    return [masked(a, hits[a.id]) for a in accounts]


async def subscriber(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await session.get(Account, account_id)
    if account is None or account.role != Role.subscriber:
        raise NotFound("account_not_found", "There is no such account.")
    return account


async def reveal(
    session: AsyncSession, *, staff: Account, account: Account, field: str, reason: str
) -> str:
    """One personal field in full, for this agent, recorded in the audit log with why."""
    if field not in REVEALABLE:
        raise InvalidInput("field_unknown", "This field cannot be shown.")
    if not reason.strip():
        raise InvalidInput("reason_required", "Say why (it goes into the audit log).")
    await audit.record(
        session,
        actor=staff,
        action="account.reveal",
        subject_type="account",
        subject_id=account.id,
        account_id=account.id,
        reason=reason,
        data={"field": field},
    )
    return str(getattr(account, field) or "")
