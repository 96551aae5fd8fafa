"""Portal: a line's usage history as bar charts (server-side SVG, no script)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openmvno.channels.portal.web import Viewer, login_redirect, not_found, page, parse_uuid
from openmvno.errors import NotFound
from openmvno.formatting import Formatter
from openmvno.i18n import N_, translate
from openmvno.usage import history
from openmvno.web.deps import RT, Session

router = APIRouter(include_in_schema=False)

RANGES = (7, 30, 90)
KIND_TITLES = {"data": N_("Data used"), "voice": N_("Minutes used"), "sms": N_("SMS sent")}
CHART_W, CHART_H, TOP, BOTTOM, LEFT = 360, 180, 18, 24, 4


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    """What the bar's tooltip (SVG ``<title>``) says: the day and the amount."""


@dataclass(frozen=True, slots=True)
class Chart:
    kind: str
    title: str
    total_text: str
    peak_text: str
    bars: list[Bar]
    first_day: str
    last_day: str
    summary: str
    """The chart in one sentence (its accessible name)."""


def _amount(fmt: Formatter, kind: str, units: int) -> str:
    if kind == "data":
        return fmt.data(units)
    if kind == "voice":
        return fmt.minutes(units)
    return fmt.sms(units)


def _short_day(day: date, lang: str) -> str:
    return f"{day.month}月{day.day}日" if lang == "zh-CN" else day.strftime("%d %b").lstrip("0")


def build_chart(found: history.LineHistory, kind: str, lang: str) -> Chart:
    fmt = Formatter(lang)
    series = found.series(kind)
    peak = max((u for _, u in series), default=0)
    n = max(len(series), 1)
    plot_h = CHART_H - TOP - BOTTOM
    slot = (CHART_W - LEFT) / n
    width = max(slot * 0.72, 1.0)
    bars = []
    for i, (day, units) in enumerate(series):
        height = 0.0 if peak == 0 else max(plot_h * units / peak, 1.5 if units else 0.0)
        bars.append(Bar(
            x=round(LEFT + i * slot + (slot - width) / 2, 2), y=round(TOP + plot_h - height, 2),
            width=round(width, 2), height=round(height, 2),
            label=f"{_short_day(day, lang)}: {_amount(fmt, kind, units)}",
        ))
    total = found.totals.get(kind, 0)
    title = translate(lang, KIND_TITLES[kind])
    summary = translate(
        lang, "{title}: {total} in {days} days, at most {peak} a day.",
        title=title, total=_amount(fmt, kind, total), days=len(series),
        peak=_amount(fmt, kind, peak),
    )
    return Chart(
        kind=kind, title=title, total_text=_amount(fmt, kind, total),
        peak_text=_amount(fmt, kind, peak), bars=bars,
        first_day=_short_day(found.start, lang), last_day=_short_day(found.end, lang),
        summary=summary,
    )


@router.get("/lines/{line_id}/usage")
async def usage_page(
    request: Request, line_id: str, visitor: Viewer, session: Session, rt: RT
) -> Response:
    if visitor.account is None:
        return login_redirect(request, visitor)
    parsed = parse_uuid(line_id)
    raw = request.query_params.get("days", "30")
    days = int(raw) if raw in {str(d) for d in RANGES} else 30
    end = history.today(rt.settings)
    if parsed is None:
        return not_found(request, visitor)
    try:
        found = await history.line_history(
            session, rt.settings, account_id=visitor.account.id, line_id=parsed,
            start=end - timedelta(days=days - 1), end=end,
        )
    except NotFound:
        return not_found(request, visitor)
    lang = request.state.language
    kinds = ["data"] + [k for k in ("voice", "sms") if found.totals.get(k)]
    fmt = Formatter(lang)
    return page(
        request, visitor, "usage.html",
        {
            "found": found, "charts": [build_chart(found, k, lang) for k in kinds],
            "days": days, "ranges": RANGES, "width": CHART_W, "height": CHART_H,
            "baseline": CHART_H - BOTTOM,
            "wallet_text": fmt.money(found.wallet_minor, rt.settings.default_currency),
        },
        keep={"days": str(days)},
    )
