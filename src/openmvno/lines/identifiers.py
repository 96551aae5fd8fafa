"""Normalising and checking what is printed on SIMs and devices."""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−_·.]+")


def normalize_token(raw: str) -> str:
    """A serial or secret as typed → canonical: NFKC (full-width → ASCII), no spaces
    or dashes, upper case. ``ｄｃ－２０２６ ０００１`` → ``DC20260001``."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()


def luhn_ok(digits: str) -> bool:
    """True when the last digit is the Luhn check digit of the others."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    """``body`` with its Luhn check digit appended (demo data, tests)."""
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise ValueError(body)  # pragma: no cover - some digit always fits


def valid_iccid(raw: str) -> str | None:
    """The ICCID's digits if it is 19–20 digits with a correct Luhn digit, else ``None``."""
    digits = normalize_token(raw)
    if not digits.isdigit() or not 19 <= len(digits) <= 20 or not luhn_ok(digits):
        return None
    return digits
