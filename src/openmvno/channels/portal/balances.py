"""What a line's balance looks like on a page: one total per kind (data, minutes, SMS)
with how much of it is left, for a bar; the buckets themselves are the folded details."""

from __future__ import annotations

from dataclasses import dataclass

from openmvno.formatting import formatter
from openmvno.i18n import N_, translate
from openmvno.ledger.models import BucketKind
from openmvno.ledger.service import LINE_KINDS, LineBalance, format_amount

KIND_LABELS = {BucketKind.data: N_("Data"), BucketKind.voice: N_("Calls"),
               BucketKind.sms: N_("SMS")}


@dataclass(frozen=True, slots=True)
class KindSummary:
    kind: str
    label: str
    remaining: int
    """Left now, all buckets in force together (raw units: bytes, seconds, messages)."""
    initial: int
    """Granted in those buckets (the bar's full length); 0 when nothing is in force."""
    remaining_text: str
    initial_text: str
    upcoming_text: str
    """Granted in buckets that start later (an early renewal), "" when none."""
    upcoming_from: str
    low: int
    """Below this the bar shows the kind is running low (a fifth of the total)."""


def kind_totals(balance: LineBalance, language: str) -> list[KindSummary]:
    """One summary per kind the line has, in the order data, calls, SMS."""
    fmt = formatter(language)
    out: list[KindSummary] = []
    for kind in LINE_KINDS:
        buckets = [b for b in balance.buckets if b.kind is kind]
        if not buckets:
            continue
        now = [b for b in buckets if b.active]
        later = [b for b in buckets if not b.active]
        remaining = sum(b.remaining for b in now)
        initial = sum(b.initial for b in now)
        upcoming = sum(b.initial for b in later)
        out.append(
            KindSummary(
                kind=kind.value,
                label=translate(language, KIND_LABELS[kind]),
                remaining=remaining,
                initial=max(initial, remaining),
                remaining_text=format_amount(fmt, kind, remaining, None),
                initial_text=format_amount(fmt, kind, max(initial, remaining), None),
                upcoming_text=format_amount(fmt, kind, upcoming, None) if later else "",
                upcoming_from=fmt.date(min(b.valid_from for b in later)) if later else "",
                low=max(initial, remaining) // 5,
            )
        )
    return out
