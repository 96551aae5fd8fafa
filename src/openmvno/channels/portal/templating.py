"""Jinja2 rendering for the portal and consoles, with translation and formatting helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from openmvno import formatting
from openmvno.channels.portal.balances import kind_totals
from openmvno.channels.portal.regions import region_names
from openmvno.i18n import translate

TEMPLATES = Path(__file__).parent / "templates"

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals["kind_totals"] = kind_totals
env.globals["region_names"] = region_names


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a template in the request's language."""
    language: str = request.state.language
    runtime = request.app.state.runtime

    def t(message: str, **params: Any) -> str:
        return translate(language, message, **params)

    ctx: dict[str, Any] = {
        "request": request,
        "lang": language,
        "t": t,
        "fmt": formatting.Formatter(language),
        "operator": runtime.settings.operator_name,
        "official_url": runtime.settings.public_url,
        "dev_outbox": runtime.settings.dev_outbox_enabled,
        "path": request.url.path,
    }
    ctx.update(context or {})
    html = env.get_template(name).render(ctx)
    return HTMLResponse(html, status_code=status_code)
