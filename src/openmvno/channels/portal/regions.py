"""Roaming regions by name in the reader's language (plans store ISO 3166 / UN M.49
codes: ``CN``, ``HK``, ``EU``); a code no locale knows is shown as it is."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from babel.lists import format_list

from openmvno.i18n import babel_locale, normalize_language

SHORT = {
    "zh-CN": {"HK": "中国香港", "MO": "中国澳门", "TW": "中国台湾"},
    "en": {"HK": "Hong Kong", "MO": "Macao"},
}
"""Shorter everyday names where the locale's is an official long form
("中国香港特别行政区", "Hong Kong SAR China")."""


@cache
def region_name(code: str, language: str) -> str:
    lang = normalize_language(language)
    upper = code.upper()
    short = SHORT.get(lang, {}).get(upper)
    if short:
        return short
    name = babel_locale(lang).territories.get(upper)
    return str(name) if name else code


def region_names(codes: Iterable[str], language: str) -> str:
    """``中国、中国香港和中国澳门`` / ``China, Hong Kong, and Macao``."""
    names = [region_name(c, language) for c in codes]
    return format_list(names, locale=babel_locale(language)) if names else ""
