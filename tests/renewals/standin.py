"""TEMPORARY stand-in until LEDGER's renew_batch (contract 7) lands: per-row, only what the
scheduler's tests need. Delete once they are committed."""

from __future__ import annotations

import sys
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.catalog.models import Plan
from openmvno.errors import DomainError
from openmvno.ledger import service as ledger
from openmvno.ledger.models import EntryReason
from openmvno.lines import states
from openmvno.lines.models import Line, LineState
from openmvno.renewals import schedule
from openmvno.runtime import Runtime


@dataclass(frozen=True)
class DueRenewal:
    line_id: uuid.UUID
    account_id: uuid.UUID
    plan_id: uuid.UUID
    period_key: str
    funding: str
    payment_attempt_id: uuid.UUID | None = None


@dataclass(frozen=True)
class RenewalOutcome:
    line_id: uuid.UUID
    status: str
    expires_at: datetime | None = None


RUNS: set[tuple[uuid.UUID, str]] = set()


async def renew_batch(session: AsyncSession, due: Sequence[DueRenewal]) -> list[RenewalOutcome]:
    out = []
    for d in due:
        if (d.line_id, d.period_key) in RUNS:
            out.append(RenewalOutcome(d.line_id, "duplicate"))
            continue
        line = await session.get(Line, d.line_id, with_for_update=True, populate_existing=True)
        plan = await session.get(Plan, d.plan_id)
        assert line is not None and plan is not None and line.expires_at is not None
        if schedule.period_key(line.expires_at) != d.period_key:
            out.append(RenewalOutcome(d.line_id, "duplicate"))
            continue
        if d.funding == "wallet":
            try:
                async with session.begin_nested():
                    await ledger.debit_wallet(
                        session, account_id=d.account_id, currency=plan.currency,
                        amount_minor=plan.price_minor, reason=EntryReason.payment,
                        key=f"renewal:{d.line_id}:{d.period_key}",
                    )
            except DomainError:
                out.append(RenewalOutcome(d.line_id, "insufficient"))
                continue
        now = clock.now()
        start = line.expires_at if line.expires_at > now else now
        until = start + timedelta(days=plan.validity_days)
        await ledger.grant_plan(
            session, account_id=d.account_id, line_id=line.id, plan=plan, order_id=None,
            valid_from=start, valid_until=until, key=f"renewal:{d.line_id}:{d.period_key}:grant",
        )
        line.expires_at = until
        if line.state != LineState.active:
            await states.transition(session, line, LineState.active, "renewed")
        RUNS.add((d.line_id, d.period_key))
        out.append(RenewalOutcome(d.line_id, "renewed", until))
    await session.flush()
    return out


def install(monkeypatch: Any, rt: Runtime) -> None:
    RUNS.clear()
    batch = types.ModuleType("openmvno.renewals.batch")
    batch.DueRenewal = DueRenewal  # type: ignore[attr-defined]
    batch.renew_batch = renew_batch  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openmvno.renewals.batch", batch)
