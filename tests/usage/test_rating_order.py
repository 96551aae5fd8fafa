"""The order buckets are used in (docs/RATING.md, step 3), down to its last tie-break."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from openmvno.usage import rating
from openmvno.usage.rating import BucketState

BOUGHT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _bucket(bucket_id: str, *, addon: bool = True, days: int = 7, priority: int = 10) -> BucketState:
    return BucketState(
        id=bucket_id, kind="data", remaining=100, initial=100, valid_from=BOUGHT,
        valid_until=BOUGHT + timedelta(days=days), priority=priority, addon=addon,
        zones=frozenset(), home=True, created_at=BOUGHT,
    )


def test_add_ons_then_nearest_expiry_then_priority() -> None:
    plan = _bucket("a", addon=False, days=1, priority=0)
    later = _bucket("b", days=9)
    sooner = _bucket("c", days=3, priority=50)
    urgent = _bucket("d", days=3, priority=5)
    assert [b.id for b in rating.order([plan, later, sooner, urgent])] == ["d", "c", "b", "a"]


def test_two_buckets_alike_in_everything_are_used_in_id_order_however_they_were_read() -> None:
    """Two add-ons bought at one instant: which goes first does not hang on the order the
    database happened to return them in."""
    first, second = _bucket("0193a0c2-0000-7000-8000-000000000001"), _bucket(
        "0193a0c2-0000-7000-8000-000000000002")
    assert rating.order([second, first]) == rating.order([first, second]) == [first, second]
