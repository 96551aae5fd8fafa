"""Numbers for people: data sizes, durations, money and dates in the reader's locale.

What a value looks like in a language never changes while the process runs, so the
babel locale of each language and the texts of recently shown values are cached per
process (bounded): a balance read formats the same few amounts and dates over and over.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_decimal

from openmvno.i18n import babel_locale, normalize_language, translate
from openmvno.money import Money

_GB = 1024**3
_MB = 1024**2
_CACHED = 4096
"""Texts kept per kind of value (all languages together)."""


@lru_cache(maxsize=16)
def _locale(language: str) -> Locale:
    return babel_locale(language)


@lru_cache(maxsize=_CACHED)
def _data(language: str, n_bytes: int) -> str:
    if n_bytes >= _GB:
        value, unit = n_bytes / _GB, "GB"
    elif n_bytes >= _MB:
        value, unit = n_bytes / _MB, "MB"
    else:
        value, unit = n_bytes / 1024, "KB"
    return f"{format_decimal(round(value, 2), locale=_locale(language))} {unit}"


@lru_cache(maxsize=_CACHED)
def _minutes(language: str, seconds: int) -> str:
    return translate(language, "{n} min", n=format_decimal(seconds // 60, locale=_locale(language)))


@lru_cache(maxsize=_CACHED)
def _sms(language: str, count: int) -> str:
    return translate(language, "{n} SMS", n=format_decimal(count, locale=_locale(language)))


@lru_cache(maxsize=_CACHED)
def _money(language: str, minor: int, currency: str) -> str:
    return Money(minor, currency).format(language)


@lru_cache(maxsize=_CACHED)
def _date(language: str, value: datetime, _offset: timedelta | None) -> str:
    # The offset is part of the key: equal instants in two zones read differently.
    return str(format_datetime(value, "yyyy-MM-dd HH:mm", locale=_locale(language), tzinfo=None))


class Formatter:
    """Bound to one language; used by templates and SMS replies alike."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.locale = _locale(language)
        self._key = normalize_language(language)

    def data(self, n_bytes: int) -> str:
        return _data(self._key, n_bytes)

    def minutes(self, seconds: int) -> str:
        return _minutes(self._key, seconds)

    def sms(self, count: int) -> str:
        return _sms(self._key, count)

    def money(self, minor: int, currency: str) -> str:
        return _money(self._key, minor, currency)

    def date(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        return _date(self._key, value, value.utcoffset())


@lru_cache(maxsize=16)
def formatter(language: str) -> Formatter:
    """The process's one :class:`Formatter` for ``language``."""
    return Formatter(language)
