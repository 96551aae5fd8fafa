"""Server-rendered SVG charts (no script, no CDN): a bar chart of one or more series over
labels, and horizontal bars for counts by name. Texts are escaped; the SVG scales to its
box (``viewBox``), so it fits a 390 px phone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#0b5cad", "#e07b00", "#2a9d55", "#b23a48", "#7b4fb8", "#3a8fa8", "#8a6d3b")
W, H, PAD_L, PAD_B, PAD_T = 600, 260, 56, 40, 16


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:g}"


def bars(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, empty: str
) -> Markup:
    """Grouped vertical bars: one group per label, one bar per series."""
    top = max((v for s in series.values() for v in s), default=0)
    tall = H + 24 * ((len(series) + 2) // 3)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {tall}" '
        f'role="img" aria-label="{escape(title)}" class="chart-svg">'
    ]
    parts.append(f"<title>{escape(title)}</title>")
    plot_w, plot_h = W - PAD_L - 8, H - PAD_B - PAD_T
    if top <= 0:
        parts.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#5b6777" '
            f'font-size="16" class="chart-empty">{escape(empty)}</text></svg>'
        )
        return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()
    for k in range(5):
        y = PAD_T + plot_h - plot_h * k / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e1e6ec"/>'
        )
        parts.append(
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6777">{_fmt(top * k / 4)}</text>'
        )
    n = max(1, len(labels))
    group = plot_w / n
    width = max(1.0, (group * 0.8) / max(1, len(series)))
    for si, (name, values) in enumerate(series.items()):
        color = PALETTE[si % len(PALETTE)]
        for i, v in enumerate(values):
            if v <= 0:
                continue
            h = plot_h * v / top
            x = PAD_L + group * i + group * 0.1 + width * si
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{PAD_T + plot_h - h:.1f}" '
                f'width="{width:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(name)} {escape(labels[i])}: {_fmt(v)}</title></rect>"
            )
    step = max(1, n // 7)
    for i, label in enumerate(labels):
        if i % step == 0:
            x = PAD_L + group * i + group / 2
            parts.append(
                f'<text x="{x:.1f}" y="{H - PAD_B + 16}" text-anchor="middle" '
                f'font-size="11" fill="#5b6777">{escape(label)}</text>'
            )
    for si, name in enumerate(series):
        x = PAD_L + (si % 3) * 180
        y = H + 4 + 24 * (si // 3)
        color = PALETTE[si % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{color}"/>'
            f'<text x="{x + 18}" y="{y + 11}" font-size="12">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def hbars(counts: Mapping[str, float], *, title: str, empty: str) -> Markup:
    """Horizontal bars, one per name (counts by state or reason)."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    top = max((v for _, v in items), default=0)
    height = max(140, 28 * len(items) + 16)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart-svg"><title>{escape(title)}</title>'
    ]
    if top <= 0:
        parts.append(
            f'<text x="{W / 2}" y="{height / 2}" text-anchor="middle" fill="#5b6777" '
            f'font-size="16" class="chart-empty">{escape(empty)}</text></svg>'
        )
        return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()
    for i, (name, v) in enumerate(items):
        y = 8 + 28 * i
        w = (W - 220) * v / top
        parts.append(
            f'<text x="150" y="{y + 15}" text-anchor="end" font-size="13">{escape(name)}</text>'
            f'<rect class="bar" x="158" y="{y}" width="{max(w, 1):.1f}" height="20" '
            f'fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{164 + w:.1f}" y="{y + 15}" font-size="12">{_fmt(v)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()
