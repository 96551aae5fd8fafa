"""Figures for the admin dashboard and the accounting exports (reads only)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock, formatting
from openmvno.lines import service as lines
from openmvno.notifications import service as notifications
from openmvno.notifications.models import Notice
from openmvno.orders.models import Order, OrderKind
from openmvno.payments.models import AttemptState, PaymentAttempt
from openmvno.usage.models import UsageRecord

DAYS = 14


@dataclass
class Dashboard:
    days: list[date]
    revenue: dict[str, list[int]] = field(default_factory=dict)
    """Money taken per day (minor units) by payment method."""
    renewals: list[int] = field(default_factory=list)
    """Plan renewals paid per day."""
    failed: dict[str, int] = field(default_factory=dict)
    lines_by_state: dict[str, int] = field(default_factory=dict)
    auto_renew: dict[str, int] = field(default_factory=dict)
    usage: dict[str, list[int]] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)

    @property
    def auto_renew_rate(self) -> int | None:
        total = sum(self.auto_renew.values())
        return round(100 * self.auto_renew.get("succeeded", 0) / total) if total else None


def _local_day(value: datetime, tz: str) -> date:
    return formatting.to_operator(value, tz).date()


async def build(session: AsyncSession, tz: str, days: int = DAYS) -> Dashboard:
    today = clock.now().astimezone(formatting.zone(tz)).date()
    span = [today - timedelta(days=days - 1 - i) for i in range(days)]
    index = {d: i for i, d in enumerate(span)}
    since = clock.now() - timedelta(days=days + 1)
    board = Dashboard(span)
    rows = (
        await session.execute(
            select(
                PaymentAttempt.settled_at,
                PaymentAttempt.method,
                PaymentAttempt.amount_minor,
                Order.kind,
            )
            .join(Order, Order.id == PaymentAttempt.order_id)
            .where(
                PaymentAttempt.state == AttemptState.succeeded, PaymentAttempt.settled_at >= since
            )
        )
    ).all()
    revenue: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    renewals = [0] * days
    for settled, method, amount, kind in rows:
        if settled is None:
            continue
        i = index.get(_local_day(settled, tz))
        if i is None:
            continue
        revenue[str(method)][i] += int(amount)
        if kind == OrderKind.plan:
            renewals[i] += 1
    board.revenue = dict(sorted(revenue.items()))
    board.renewals = renewals
    failed = await session.execute(
        select(PaymentAttempt.failure_code, func.count())
        .where(PaymentAttempt.state == AttemptState.failed, PaymentAttempt.updated_at >= since)
        .group_by(PaymentAttempt.failure_code)
    )
    board.failed = {str(code or "unknown"): int(n) for code, n in failed.all()}
    board.lines_by_state = {
        str(k.value): v for k, v in (await lines.count_by_state(session)).items() if v
    }
    renew = await session.execute(
        select(Notice.event, func.count())
        .where(Notice.event.in_(["renewal_succeeded", "renewal_failed"]))
        .group_by(Notice.event)
    )
    board.auto_renew = {
        ("succeeded" if e == "renewal_succeeded" else "failed"): int(n) for e, n in renew.all()
    }
    used = await session.execute(
        select(UsageRecord.day, UsageRecord.kind, func.sum(UsageRecord.units))
        .where(UsageRecord.day >= span[0])
        .group_by(UsageRecord.day, UsageRecord.kind)
    )
    usage: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    for day, used_kind, units in used.all():
        i = index.get(day)
        if i is not None:
            usage[str(used_kind)][i] += int(units or 0)
    board.usage = dict(sorted(usage.items()))
    outbox: dict[str, int] = defaultdict(int)
    for (_kind, state), n in (await notifications.counts(session)).items():
        outbox[state] += n
    board.outbox = dict(outbox)
    return board


# ---------------------------------------------------------------- CSV exports


def _bounds(start: date, end: date, tz: str) -> tuple[datetime, datetime]:
    zone = formatting.zone(tz)
    low = datetime.combine(start, datetime.min.time(), zone)
    high = datetime.combine(end + timedelta(days=1), datetime.min.time(), zone)
    return low, high


async def orders_csv(session: AsyncSession, start: date, end: date, tz: str) -> str:
    low, high = _bounds(start, end, tz)
    rows = (
        await session.scalars(
            select(Order)
            .where(Order.created_at >= low, Order.created_at < high)
            .order_by(Order.created_at, Order.id)
        )
    ).all()
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "number",
            "created_at",
            "kind",
            "state",
            "amount_minor",
            "currency",
            "account_id",
            "credited_account_id",
            "msisdn",
            "paid_at",
            "fulfilled_at",
            "refunded_at",
        ]
    )
    for o in rows:
        w.writerow(
            [
                o.number,
                o.created_at.isoformat(),
                o.kind.value,
                o.state.value,
                o.amount_minor,
                o.currency,
                o.account_id or "",
                o.credited_account_id or "",
                o.msisdn or "",
                o.paid_at.isoformat() if o.paid_at else "",
                o.fulfilled_at.isoformat() if o.fulfilled_at else "",
                o.refunded_at.isoformat() if o.refunded_at else "",
            ]
        )
    return out.getvalue()


async def payments_csv(session: AsyncSession, start: date, end: date, tz: str) -> str:
    low, high = _bounds(start, end, tz)
    rows = (
        await session.execute(
            select(PaymentAttempt, Order.number)
            .outerjoin(Order, Order.id == PaymentAttempt.order_id)
            .where(PaymentAttempt.created_at >= low, PaymentAttempt.created_at < high)
            .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
        )
    ).all()
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "attempt_id",
            "created_at",
            "order_number",
            "provider",
            "method",
            "state",
            "amount_minor",
            "currency",
            "provider_ref",
            "failure_code",
            "settled_at",
        ]
    )
    for a, number in rows:
        w.writerow(
            [
                a.id,
                a.created_at.isoformat(),
                number or "",
                a.provider,
                a.method.value,
                a.state.value,
                a.amount_minor,
                a.currency,
                a.provider_ref or "",
                a.failure_code or "",
                a.settled_at.isoformat() if a.settled_at else "",
            ]
        )
    return out.getvalue()
