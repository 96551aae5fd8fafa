"""Normalising what people type: phone numbers (E.164), emails, passwords."""

from __future__ import annotations

import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from openmvno.errors import InvalidInput

COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "12345678",
        "123456789",
        "1234567890",
        "qwerty123",
        "11111111",
        "88888888",
        "iloveyou",
        "abc12345",
        "a1234567",
        "qwertyuiop",
        "00000000",
        "66666666",
        "password123",
        "admin123",
        "welcome1",
    }
)


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


def check_password(password: str, *, personal: tuple[str | None, ...] = ()) -> None:
    """Length 8–128, not all digits, not a common password, not your phone/email/name."""
    if len(password) < 8:
        raise InvalidInput("weak_password", "Use at least 8 characters for the password.")
    if len(password) > 128:
        raise InvalidInput("weak_password", "Use at most 128 characters for the password.")
    lowered = password.lower()
    if password.isdigit() or lowered in COMMON_PASSWORDS:
        raise InvalidInput(
            "weak_password", "This password is too easy to guess; mix letters and digits."
        )
    for item in personal:
        if item and len(item) >= 4 and (item.lower() in lowered or lowered in item.lower()):
            raise InvalidInput(
                "weak_password", "Do not use your name, phone number or email in the password."
            )


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
