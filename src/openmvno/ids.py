"""Row ids: time-ordered UUIDs (version 7, RFC 9562).

A version-7 UUID starts with the Unix time in milliseconds, then 74 random bits. Rows
created together get ids that sort together, so inserting a batch of them lands on the
right-hand pages of every index on the id (and of every index on a column holding such
an id) instead of on random pages all over it: at the month-end storm's hundreds of
thousands of rows that keeps the indexes' working set in memory and is about a tenth of
the database's work. The random part is still far beyond guessing; ids are never
secrets anyway (tokens and codes have their own random values).
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_id", "new_ids"]

_VERSION = 7 << 76
_VARIANT = 0b10 << 62
_RANDOM = ((1 << 80) - 1) & ~(0xF << 76) & ~(0b11 << 62)
"""The 74 random bits (the low 80 bits without the version and variant fields)."""


def new_id() -> uuid.UUID:
    """A new version-7 UUID."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[uuid.UUID]:
    """``count`` new version-7 UUIDs of the current millisecond (one call for the random
    bits of all of them)."""
    stamp = (time.time_ns() // 1_000_000) << 80
    raw = os.urandom(10 * count)
    return [
        uuid.UUID(int=stamp | _VERSION | _VARIANT
                  | (int.from_bytes(raw[i:i + 10], "big") & _RANDOM))
        for i in range(0, 10 * count, 10)
    ]
