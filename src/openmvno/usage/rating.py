"""Rating: what a usage record takes from which bucket and from the wallet. Pure: no I/O.

The rules (also in docs/RATING.md, for operators):

1. **Which buckets.** Only the line's buckets of the record's kind (data, voice, SMS)
   that are valid when the usage *started* (``valid_from <= started_at < valid_until``)
   and still hold something.
2. **Zones.** The home zone (``OPENMVNO_USAGE_HOME_ZONE``, ``CN``) is covered by every
   plan's buckets except a *roaming pack*: an add-on that lists roaming zones but not the
   home zone, whose buckets work only in its zones. Any other zone is covered by the
   buckets of plans that list it in ``roaming_zones``.
3. **Order.** Add-ons before the plan, then nearest expiry first (a bucket with no expiry
   last), then ``priority`` (lower first), then the older bucket.
4. **Beyond the allowances.** Where the line's plan covers the zone (home, or one of its
   ``roaming_zones``): the plan's ``overage_rule`` — ``block``, or ``charge_wallet`` at its
   ``overage_rates``. Elsewhere: the plan's ``roaming_rates``; a kind without a rate is
   blocked. A rate missing for a kind is ``block`` for that kind.
5. **Rounding of wallet charges**, per record: data is counted in started KB (1 KB =
   1024 bytes) and costs ``ceil(KB × rate_per_MB / 1024)`` minor units; voice in started
   minutes (``ceil(seconds / 60) × rate_per_min``); SMS per message. Only the part
   beyond the allowances is rounded.
6. **Never below zero.** A bucket gives at most what it holds; the wallet pays at most
   what it holds: the affordable part is charged (whole started KB / minutes /
   messages) and the record is ``partial``; nothing affordable at all is ``blocked``.

Records of one line are rated in ``started_at`` order (then as sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

KINDS: Final = ("data", "voice", "sms")
RATE_UNIT: Final = {"data": "data_mb", "voice": "voice_min", "sms": "sms"}
"""The ``overage_rates`` / ``roaming_rates`` key of each kind."""

CHARGED: Final = "charged"
PARTIAL: Final = "partial"
BLOCKED: Final = "blocked"
DUPLICATE: Final = "duplicate"
UNKNOWN_LINE: Final = "unknown_line"
LINE_NOT_ACTIVE: Final = "line_not_active"
OUT_OF_ORDER: Final = "out_of_order"
STATUSES: Final = (
    CHARGED, PARTIAL, BLOCKED, DUPLICATE, UNKNOWN_LINE, LINE_NOT_ACTIVE, OUT_OF_ORDER
)


@dataclass(slots=True)
class BucketState:
    """A bucket as rating sees it; ``remaining`` goes down as records are rated. ``id`` is
    the bucket's UUID as text (what the answer names)."""

    id: str
    kind: str
    remaining: int
    initial: int
    valid_from: datetime
    valid_until: datetime | None
    priority: int
    addon: bool
    zones: frozenset[str]
    """The plan's ``roaming_zones``."""
    home: bool
    """Whether the bucket works in the home zone (False for a roaming pack)."""
    created_at: datetime | None = None

    def order_key(self) -> tuple[int, int, float, int, float, str]:
        """Add-ons first, then nearest expiry, priority, the older bucket; the id last, so
        two buckets alike in all of that are used in the same order however they were read."""
        until = self.valid_until
        created = self.created_at or self.valid_from
        return (
            0 if self.addon else 1,
            0 if until is not None else 1,
            until.timestamp() if until is not None else 0.0,
            self.priority,
            created.timestamp(),
            self.id,
        )

    def covers(self, zone: str, home_zone: str) -> bool:
        return (self.home and zone == home_zone) or zone in self.zones


@dataclass(slots=True)
class PlanRules:
    """The line's plan, as far as rating goes."""

    charge_wallet: bool
    overage_rates: dict[str, int]
    roaming_rates: dict[str, int]
    zones: frozenset[str]
    currency: str

    def wallet_rate(self, kind: str, zone: str, home_zone: str) -> int | None:
        """Minor units per rate unit beyond the allowances, or None: blocked."""
        unit = RATE_UNIT[kind]
        if zone == home_zone or zone in self.zones:
            if not self.charge_wallet:
                return None
            rate = self.overage_rates.get(unit)
        else:
            rate = self.roaming_rates.get(unit)
        return None if rate is None else int(rate)


def is_roaming_pack(addon: bool, zones: frozenset[str], home_zone: str) -> bool:
    return addon and bool(zones) and home_zone not in zones


def wallet_cost(kind: str, units: int, rate: int) -> int:
    """What ``units`` beyond the allowances cost (rule 5)."""
    if units <= 0 or rate <= 0:
        return 0
    if kind == "data":
        return _ceil(_ceil(units, 1024) * rate, 1024)
    if kind == "voice":
        return _ceil(units, 60) * rate
    return units * rate


def affordable_units(kind: str, units: int, rate: int, money: int) -> tuple[int, int]:
    """The most of ``units`` the wallet's ``money`` pays for (whole started KB / minutes /
    messages) and its cost: ``(units, cost)``."""
    if rate <= 0:
        return units, 0
    if kind == "data":
        kb = min(_ceil(units, 1024), money * 1024 // rate)
        got = min(units, kb * 1024)
    elif kind == "voice":
        minutes = min(_ceil(units, 60), money // rate)
        got = min(units, minutes * 60)
    else:
        got = min(units, money // rate)
    return got, wallet_cost(kind, got, rate)


@dataclass(slots=True)
class Rated:
    """What one record took: ``taken`` is ``[(bucket_id, units), ...]`` in the order used."""

    status: str
    charged_units: int = 0
    wallet_minor: int = 0
    overage_units: int = 0
    taken: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Wallet:
    id: str | None
    remaining: int
    currency: str


def rate(
    kind: str,
    units: int,
    started_at: datetime,
    zone: str,
    buckets: list[BucketState],
    plan: PlanRules | None,
    wallet: Wallet | None,
    home_zone: str,
) -> Rated:
    """Rate one record against the line's ``buckets`` of its kind, already in the order of
    rule 3 (see :func:`order`); changes ``remaining`` of the buckets and the wallet."""
    rest = units
    out = Rated(CHARGED)
    for b in buckets:
        if rest == 0:
            break
        if b.remaining <= 0 or b.valid_from > started_at:
            continue
        if b.valid_until is not None and started_at >= b.valid_until:
            continue
        if not b.covers(zone, home_zone):
            continue
        take = b.remaining if b.remaining < rest else rest
        b.remaining -= take
        rest -= take
        out.taken.append((b.id, take))
    if rest and plan is not None:
        rate_minor = plan.wallet_rate(kind, zone, home_zone)
        if rate_minor is not None:
            money = wallet.remaining if wallet is not None and wallet.id is not None else 0
            cost = wallet_cost(kind, rest, rate_minor)
            if cost <= money:
                got = rest
            else:
                got, cost = affordable_units(kind, rest, rate_minor, money)
            if got:
                if cost:
                    assert wallet is not None
                    wallet.remaining -= cost
                out.wallet_minor = cost
                out.overage_units = got
                rest -= got
    out.charged_units = units - rest
    if rest:
        out.status = PARTIAL if out.charged_units else BLOCKED
    return out


def order(buckets: list[BucketState]) -> list[BucketState]:
    """Rule 3: add-ons first, nearest expiry, priority, older first, then by id."""
    if len(buckets) < 2:
        return buckets
    return sorted(buckets, key=BucketState.order_key)


def data_thresholds(initial: int, before: int, after: int) -> list[int]:
    """The thresholds (80, 100 per cent used) a data bucket crossed going from ``before``
    to ``after`` remaining."""
    if initial <= 0 or after >= before:
        return []
    crossed = []
    for percent in (80, 100):
        limit = initial - initial * percent // 100  # remaining at that point
        if before > limit >= after:
            crossed.append(percent)
    return crossed


def _ceil(a: int, b: int) -> int:
    """``ceil(a / b)`` in integers (no float rounding for large values)."""
    return -(-a // b)


__all__ = [
    "BLOCKED",
    "CHARGED",
    "DUPLICATE",
    "KINDS",
    "LINE_NOT_ACTIVE",
    "OUT_OF_ORDER",
    "PARTIAL",
    "RATE_UNIT",
    "STATUSES",
    "UNKNOWN_LINE",
    "BucketState",
    "PlanRules",
    "Rated",
    "Wallet",
    "affordable_units",
    "data_thresholds",
    "is_roaming_pack",
    "order",
    "rate",
    "wallet_cost",
]
