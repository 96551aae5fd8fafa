"""What a charged batch tells the subscriber and the network, once each.

- ``data_threshold`` at 80 % and 100 % used of each data bucket (key
  ``data_threshold:<line>:<bucket>:<percent>``);
- ``wallet_low`` when usage takes the wallet below ``usage_wallet_low_minor`` (at most
  once a day per account: ``wallet_low:<account>:<date>``);
- ``overage_started`` (urgent, so quiet hours do not hold it) as soon as a line's
  allowance of a kind runs out on a plan that charges the wallet beyond it, so the
  subscriber is warned before, or at the latest with, the first overage charge; once per
  line and period (``overage_started:<line>:<expiry>``);
- barring (:mod:`openmvno.usage.barring`) of lines whose data ran out with nothing to
  pay for more, or whose data usage was refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmvno import clock
from openmvno.config import Settings
from openmvno.usage import barring, notify, rating
from openmvno.usage.rating import Wallet

if TYPE_CHECKING:
    from openmvno.usage.charging import LineInfo


def _exhausted(
    info: LineInfo, kind: str, before: dict[str, int], home: str, now: datetime
) -> bool:
    """The line's allowance of ``kind`` usable at home right now ran out in this batch."""
    current = had = False
    for b in info.buckets[kind]:
        if not b.home or b.valid_from > now or (
            b.valid_until is not None and b.valid_until <= now
        ):
            continue
        if b.remaining > 0:
            return False
        current = True
        if before.get(b.id, 0) > 0:
            had = True
    return current and had


def plan_pays_data(info: LineInfo, home: str) -> bool:
    return info.plan is not None and info.plan.wallet_rate("data", home, home) is not None


async def after_batch(
    session: AsyncSession,
    settings: Settings,
    *,
    lines: dict[str, LineInfo],
    buckets: dict[str, LineInfo],
    bucket_plan: dict[str, dict[str, str]],
    initial: dict[str, int],
    before: dict[str, int],
    after: dict[str, int],
    wallets: dict[str | None, Wallet],
    wallet_account: dict[str, str],
    overage_lines: dict[str, LineInfo],
    refused_data: set[str],
    touched: dict[str, set[str]],
    kinds: dict[str, str],
) -> None:
    """``after`` holds the buckets this batch moved; ``touched`` the kinds each line used
    from its buckets (only those can have run out). Ids are UUIDs as text."""
    home = settings.usage_home_zone
    notices: list[notify.UsageNotice] = []
    for bucket_id, left in after.items():
        total = initial.get(bucket_id, 0)
        if left > total - total * 80 // 100:
            continue  # not 80 % used yet (most buckets of a batch): nothing crossed
        info = buckets.get(bucket_id)
        if info is None or kinds.get(bucket_id) != "data" or left >= before[bucket_id]:
            continue
        for percent in rating.data_thresholds(total, before[bucket_id], left):
            notices.append(notify.UsageNotice(
                account_id=uuid.UUID(info.account_id), event="data_threshold",
                line_id=uuid.UUID(info.id),
                key=f"data_threshold:{info.id}:{bucket_id}:{percent}",
                params={"percent": percent,
                        "plan": bucket_plan.get(bucket_id) or info.plan_name or ""},
            ))
    today = clock.now().date().isoformat()
    low = settings.usage_wallet_low_minor
    for wallet_id, w in wallets.items():
        if wallet_id is None:
            continue
        if wallet_id in after and before[wallet_id] >= low > w.remaining:
            account_id = wallet_account[wallet_id]
            notices.append(notify.UsageNotice(
                account_id=uuid.UUID(account_id), event="wallet_low", line_id=None,
                key=f"wallet_low:{account_id}:{today}",
                params={"balance_minor": w.remaining, "currency": w.currency},
            ))
    warn: dict[str, LineInfo] = dict(overage_lines)
    bars: list[barring.BarTarget] = []
    now = clock.now()
    for line_id, used_kinds in touched.items():
        info = lines[line_id]
        plan = info.plan
        for kind in used_kinds:
            if not _exhausted(info, kind, before, home, now):
                continue
            pays = plan is not None and plan.wallet_rate(kind, home, home) is not None
            if pays:
                warn[info.id] = info
            elif kind == "data":
                bars.append(barring.BarTarget(
                    uuid.UUID(info.id), uuid.UUID(info.account_id), info.msisdn, info.iccid,
                    "allowance_used",
                ))
    barring_now = {str(t.line_id) for t in bars}
    for line_id in refused_data:
        info = lines[line_id]
        if line_id not in barring_now:
            reason = "wallet_empty" if plan_pays_data(info, home) else "allowance_used"
            bars.append(barring.BarTarget(
                uuid.UUID(info.id), uuid.UUID(info.account_id), info.msisdn, info.iccid, reason
            ))
    for info in warn.values():
        period = info.expires_at.isoformat() if info.expires_at else "open"
        params: dict[str, Any] = {"plan": info.plan_name or ""}
        notices.insert(0, notify.UsageNotice(
            account_id=uuid.UUID(info.account_id), event="overage_started",
            line_id=uuid.UUID(info.id),
            key=f"overage_started:{info.id}:{period}", params=params, urgent=True,
        ))
    await notify.send(session, notices)
    await barring.bar_lines(session, bars)


__all__ = ["after_batch"]
