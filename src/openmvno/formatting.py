"""Numbers for people: data sizes, durations, money and dates in the reader's locale."""

from __future__ import annotations

from datetime import datetime

from babel.dates import format_datetime
from babel.numbers import format_decimal

from openmvno.i18n import babel_locale, translate
from openmvno.money import Money

_GB = 1024**3
_MB = 1024**2


class Formatter:
    """Bound to one language; used by templates and SMS replies alike."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.locale = babel_locale(language)

    def data(self, n_bytes: int) -> str:
        if n_bytes >= _GB:
            value, unit = n_bytes / _GB, "GB"
        elif n_bytes >= _MB:
            value, unit = n_bytes / _MB, "MB"
        else:
            value, unit = n_bytes / 1024, "KB"
        return f"{format_decimal(round(value, 2), locale=self.locale)} {unit}"

    def minutes(self, seconds: int) -> str:
        return translate(
            self.language, "{n} min", n=format_decimal(seconds // 60, locale=self.locale)
        )

    def sms(self, count: int) -> str:
        return translate(self.language, "{n} SMS", n=format_decimal(count, locale=self.locale))

    def money(self, minor: int, currency: str) -> str:
        return Money(minor, currency).format(self.language)

    def date(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        return str(format_datetime(value, "yyyy-MM-dd HH:mm", locale=self.locale, tzinfo=None))
