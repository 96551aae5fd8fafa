"""Row ids: version-7 UUIDs, time-ordered, distinct."""

from __future__ import annotations

import uuid

import pytest

from openmvno import ids


def test_new_ids_are_version_7_with_the_rfc_variant_and_all_distinct() -> None:
    made = ids.new_ids(1000) + [ids.new_id() for _ in range(10)]
    assert {u.version for u in made} == {7}
    assert {u.variant for u in made} == {uuid.RFC_4122}
    assert len(set(made)) == len(made)


def test_ids_of_a_later_millisecond_sort_after_and_carry_their_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_764_000_000_123_456_789)
    early = ids.new_ids(50)
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_764_000_000_124_000_000)
    late = ids.new_ids(50)
    assert max(early) < min(late)
    assert {u.int >> 80 for u in early} == {1_764_000_000_123}
    assert {u.int >> 80 for u in late} == {1_764_000_000_124}
