"""Cast and props for ledger stories: accounts, lines, plans, orders, and the books."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno.accounts.models import Account
from openmvno.catalog.models import Plan, PlanKind
from openmvno.db import unit_of_work
from openmvno.ledger import service as ledger
from openmvno.ledger.models import Bucket, BucketKind
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.orders.models import Order, OrderKind
from openmvno.runtime import Runtime

GB = 1024**3
MB = 1024**2


async def make_account(session: AsyncSession, name: str) -> Account:
    account = Account(name=name, password_hash="not-used", language="zh-CN")
    session.add(account)
    await session.flush()
    return account


async def make_plan(
    session: AsyncSession,
    code: str,
    *,
    kind: PlanKind = PlanKind.mixed,
    price_minor: int = 5000,
    data_bytes: int = 10 * GB,
    voice_seconds: int = 100 * 60,
    sms_count: int = 50,
    validity_days: int = 30,
) -> Plan:
    plan = Plan(
        code=code,
        kind=kind,
        name_zh=f"{code} 套餐",
        name_en=f"{code} plan",
        price_minor=price_minor,
        currency="CNY",
        validity_days=validity_days,
        data_bytes=data_bytes,
        voice_seconds=voice_seconds,
        sms_count=sms_count,
    )
    session.add(plan)
    await session.flush()
    return plan


async def make_line(
    session: AsyncSession,
    account: Account,
    *,
    plan: Plan | None = None,
    expires_at: datetime | None = None,
    auto_renew: bool = False,
) -> Line:
    n = uuid.uuid4().int % 10**8
    line = Line(
        kind=LineKind.esim,
        iccid=f"89860000{n:012d}0",
        msisdn=f"+86170{n:08d}",
        account_id=account.id,
        state=LineState.active,
        plan_id=plan.id if plan else None,
        expires_at=expires_at,
        auto_renew=auto_renew,
    )
    session.add(line)
    await session.flush()
    return line


async def make_order(
    session: AsyncSession,
    account: Account,
    *,
    kind: OrderKind = OrderKind.plan,
    amount_minor: int = 5000,
    line: Line | None = None,
    plan: Plan | None = None,
) -> Order:
    key = uuid.uuid4().hex
    order = Order(
        number=key[:20],
        account_id=account.id,
        line_id=line.id if line else None,
        kind=kind,
        plan_id=plan.id if plan else None,
        amount_minor=amount_minor,
        currency="CNY",
        idempotency_scope=str(account.id),
        idempotency_key=key,
        request_hash=key,
    )
    session.add(order)
    await session.flush()
    return order


async def books(rt: Runtime) -> dict[str, int]:
    """Every balance in the database by a readable name, after checking the invariant.

    ``"Li Lei wallet CNY"`` for money, ``"M30 data until 12-25"`` for a line's bucket.
    """
    async with unit_of_work(rt.sessions) as session:
        assert await ledger.check(session) == []
        rows = await session.execute(
            select(Bucket, Account.name, Plan.code)
            .join(Account, Account.id == Bucket.account_id)
            .outerjoin(Plan, Plan.id == Bucket.plan_id)
        )
        out: dict[str, int] = {}
        for bucket, name, code in rows:
            assert bucket.remaining >= 0
            if bucket.kind == BucketKind.money:
                label = f"{name} wallet {bucket.currency}"
            else:
                until = f"{bucket.valid_until:%m-%d}" if bucket.valid_until else "forever"
                label = f"{code} {bucket.kind} until {until}"
            assert label not in out, f"two buckets called {label}"
            out[label] = bucket.remaining
        return out
