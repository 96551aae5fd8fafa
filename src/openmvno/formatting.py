"""Numbers for people: data sizes, durations, money and dates in the reader's locale.

Dates a person sees are always in the operator's time zone (``settings.timezone``, an
IANA name, default ``Asia/Shanghai``), never in UTC: :func:`use_timezone` sets it for the
process (``build_runtime`` does, from the settings), :func:`to_operator` converts an
instant, :meth:`Formatter.date` / :meth:`Formatter.day` write it in the reader's
language, and :func:`next_send_time` says when a non-urgent message may leave given
the quiet hours (also in that zone).

What a value looks like in a language never changes while the process runs, so the
babel locale of each language and the texts of recently shown values are cached per
process (bounded): a balance read formats the same few amounts and dates over and over.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from openmvno.i18n import babel_locale, normalize_language, translate
from openmvno.money import Money

_GB = 1024**3
_MB = 1024**2
_CACHED = 4096
"""Texts kept per kind of value (all languages together)."""


DEFAULT_TIMEZONE = "Asia/Shanghai"
_zone_name = DEFAULT_TIMEZONE


@lru_cache(maxsize=32)
def zone(name: str | None = None) -> ZoneInfo:
    """The ``ZoneInfo`` of ``name`` (default: the process's operator zone)."""
    return ZoneInfo(name or _zone_name)


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not a usable IANA time zone (``None`` when it is)."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return f"{name!r} is not an IANA time zone name (e.g. Asia/Shanghai)"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"{name!r} is not a known IANA time zone (e.g. Asia/Shanghai, Asia/Hong_Kong, UTC)"
    return None


def use_timezone(name: str) -> None:
    """Set the operator's zone for this process (dates shown, quiet hours)."""
    global _zone_name
    zone(name)  # fails early on an unknown name
    _zone_name = name


def current_timezone() -> str:
    return _zone_name


def to_operator(value: datetime, tz: str | None = None) -> datetime:
    """``value`` (aware; naive means UTC) as a time in the operator's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone(tz))


def operator_datetime(value: datetime, settings: Any = None, language: str = "en") -> str:
    """``yyyy-MM-dd HH:mm`` in the operator's zone (``settings.timezone`` when given), for
    command output and logs a person reads."""
    tz = getattr(settings, "timezone", None) or _zone_name
    return formatter(language).date(value, tz=tz)


def parse_clock(value: str) -> time:
    """``HH:MM`` (24 hours) as a time of day; ``ValueError`` otherwise."""
    hours, _, minutes = value.partition(":")
    if len(hours) not in (1, 2) or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError(f"{value!r} is not a time of day HH:MM")
    return time(int(hours), int(minutes))


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """Whether ``local`` falls in [start, end) (a range may wrap over midnight)."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def next_send_time(
    now: datetime, *, start: str | None = None, end: str | None = None, tz: str | None = None,
    settings: Any = None,
) -> datetime:
    """When a non-urgent message written at ``now`` may be sent: ``now`` itself outside
    quiet hours, else the end of the quiet hours (operator zone; returned in UTC). The
    hours come from ``settings`` (``quiet_hours_start``/``quiet_hours_end``/``timezone``)
    unless given. Pure: no clock, no database. Over a daylight-saving change the end is
    the wall-clock end of that day (the zone's rules decide the instant)."""
    start = start or getattr(settings, "quiet_hours_start", None) or "22:00"
    end = end or getattr(settings, "quiet_hours_end", None) or "08:00"
    tz = tz or getattr(settings, "timezone", None) or _zone_name
    begin, finish = parse_clock(start), parse_clock(end)
    local = to_operator(now, tz)
    if not in_quiet_hours(local.time(), begin, finish):
        return now.astimezone(UTC)
    day = local.date()
    if local.time() >= finish:  # quiet since this evening: it ends tomorrow morning
        day += timedelta(days=1)
    resume = datetime.combine(day, finish, tzinfo=zone(tz))
    return resume.astimezone(UTC)


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
def _date(language: str, value: datetime, tz: str) -> str:
    # The zone is part of the key: an instant reads differently in two zones.
    local = to_operator(value, tz)
    return str(format_datetime(local, "yyyy-MM-dd HH:mm", locale=_locale(language), tzinfo=None))


@lru_cache(maxsize=_CACHED)
def _day(language: str, value: datetime, tz: str) -> str:
    return str(format_date(to_operator(value, tz).date(), "long", locale=_locale(language)))


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

    def date(self, value: datetime | None, *, tz: str | None = None) -> str:
        """Date and time (``yyyy-MM-dd HH:mm``) in the operator's zone."""
        if value is None:
            return "—"
        return _date(self._key, value, tz or _zone_name)

    def day(self, value: datetime | None, *, tz: str | None = None) -> str:
        """The calendar day in the operator's zone, in the reader's words
        (``2026年12月2日``, ``December 2, 2026``)."""
        if value is None:
            return "—"
        return _day(self._key, value, tz or _zone_name)


@lru_cache(maxsize=16)
def formatter(language: str) -> Formatter:
    """The process's one :class:`Formatter` for ``language``."""
    return Formatter(language)
