"""Normalising what people type: phone numbers (E.164), emails, passwords."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from zxcvbn import zxcvbn

from openmvno.errors import InvalidInput

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
PASSWORD_MIN_SCORE = 3
"""zxcvbn's scale: 0-2 fall to an online or a fast offline guess; 3 and up are kept."""
_PERSONAL_MIN_LENGTH = 4
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn"})
"""Control and format characters (zero-width spaces, direction marks), lone surrogates and
unassigned code points: invisible, or typed differently on the next device."""


def normalize_phone(raw: str, region: str) -> str:
    """E.164 form of a phone number typed in any common way (spaces, dashes, full-width)."""
    text = unicodedata.normalize("NFKC", raw).strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput("invalid_phone", "This is not a valid phone number.") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("invalid_phone", "This is not a valid phone number.")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_email(raw: str) -> str:
    try:
        info = validate_email(
            unicodedata.normalize("NFKC", raw).strip(), check_deliverability=False
        )
    except EmailNotValidError as exc:
        raise InvalidInput("invalid_email", "This is not a valid email address.") from exc
    return str(info.normalized).lower()


def is_email(login: str) -> bool:
    return "@" in login


def normalize_login(raw: str, region: str) -> str:
    """A login is an email or a phone number; return its stored form."""
    return normalize_email(raw) if is_email(raw) else normalize_phone(raw, region)


def normalize_password(password: str) -> str:
    """The form a password is hashed and checked in (NFKC: a full-width ``Ａ`` is ``A``)."""
    return unicodedata.normalize("NFKC", password)


def _personal_forms(personal: tuple[str | None, ...]) -> set[str]:
    """Each personal value lower-cased, and with only its letters and digits (``Li Lei`` →
    ``lilei``); a phone's national number."""
    forms: set[str] = set()
    for item in personal:
        if not item:
            continue
        value = unicodedata.normalize("NFKC", item).strip().lower()
        candidates = {value, "".join(ch for ch in value if ch.isalnum())}
        if value.startswith("+"):
            try:
                number = phonenumbers.parse(value)
                candidates.add(str(number.national_number))
            except phonenumbers.NumberParseException:
                pass
        forms |= {c for c in candidates if len(c) >= _PERSONAL_MIN_LENGTH}
    return forms


def check_password(password: str, *, personal: tuple[str | None, ...] = ()) -> str:
    """Refuse a password that is short, invisible, or easy to guess; return the form to
    hash (:func:`normalize_password`).

    At least 10 and at most 128 characters after NFKC normalisation; no control or format
    characters; at least one letter or digit (not symbols or emoji only); not containing
    the user's own phone number, email or name; and a zxcvbn score of 3 or more, with those
    personal values as its ``user_inputs``."""
    text = normalize_password(password)
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in text):
        raise InvalidInput(
            "weak_password",
            "The password contains an invisible or control character; type it again without it.",
        )
    if len(text) < PASSWORD_MIN_LENGTH:
        raise InvalidInput(
            "weak_password", "Use at least {count} characters for the password.",
            count=PASSWORD_MIN_LENGTH,
        )
    if len(text) > PASSWORD_MAX_LENGTH:
        raise InvalidInput(
            "weak_password", "Use at most {count} characters for the password.",
            count=PASSWORD_MAX_LENGTH,
        )
    if not any(ch.isalnum() for ch in text):
        raise InvalidInput(
            "weak_password", "Use letters or digits in the password, not only symbols or emoji."
        )
    forms = _personal_forms(personal)
    lowered = text.lower()
    squeezed = "".join(ch for ch in lowered if ch.isalnum())
    if any(form in lowered or form in squeezed or lowered in form for form in forms):
        raise InvalidInput(
            "weak_password", "Do not use your name, phone number or email in the password."
        )
    # zxcvbn also gets the words of a name and an email's parts: using them costs score.
    words = sorted(
        forms | {w for item in personal if item for w in re.split(r"[\s@.+_-]+", item.lower()) if w}
    )
    score = zxcvbn(text, user_inputs=words, max_length=PASSWORD_MAX_LENGTH)["score"]
    if score < PASSWORD_MIN_SCORE:
        raise InvalidInput(
            "weak_password",
            "This password is common or easy to guess; try a few unrelated words together.",
        )
    return text


def mask_name(name: str) -> str:
    """Show just enough of an owner's name to confirm it: ``张*明``, ``J*** S****``."""
    parts = name.split()
    if len(parts) > 1:
        return " ".join(p[0] + "*" * (len(p) - 1) for p in parts)
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"
