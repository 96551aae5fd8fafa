"""``POST /ussd``: the USSD aggregator's callback (Africa's Talking form fields
``sessionId``, ``serviceCode``, ``phoneNumber``, ``text``), answered in plain text.

Only the aggregator may call it: its address in ``ussd_allowed_addresses`` (CIDR list;
the client address as the app sees it, i.e. after ``trusted_proxies``) or the shared
secret ``ussd_secret`` in ``X-USSD-Secret``. Anyone else gets a 403.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from openmvno.channels.ussd.menu import respond
from openmvno.db import unit_of_work
from openmvno.fields import clean_text
from openmvno.runtime import Runtime
from openmvno.web.deps import RT

router = APIRouter(tags=["ussd"])
LIMITS = {"sessionId": 120, "serviceCode": 40, "phoneNumber": 32, "text": 400}
BAD_REQUEST = "END 请求无效。Invalid request."


def allowed(rt: Runtime, request: Request) -> bool:
    secret = rt.settings.ussd_secret.get_secret_value()
    given = request.headers.get("x-ussd-secret", "")
    if secret and given and hmac.compare_digest(secret.encode(), given.encode("utf-8", "replace")):
        return True
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False)
               for n in rt.settings.ussd_allowed_addresses)


@router.post("/ussd", response_class=PlainTextResponse, include_in_schema=False)
async def ussd(request: Request, rt: RT) -> PlainTextResponse:
    """One step of a USSD session: ``CON …`` or ``END …`` (≤ 182 characters)."""
    if not allowed(rt, request):
        return PlainTextResponse("END Forbidden", status_code=403)
    try:
        form = await request.form()
        values = {}
        for name, limit in LIMITS.items():
            raw = form.get(name, "")
            if not isinstance(raw, str):
                raise ValueError(name)
            values[name] = clean_text(raw, max_length=limit, form="NFKC") if raw else ""
    except (ValueError, TypeError, UnicodeError):
        return PlainTextResponse(BAD_REQUEST, status_code=400)
    if not values["sessionId"] or not values["phoneNumber"]:
        return PlainTextResponse(BAD_REQUEST, status_code=400)
    async with unit_of_work(rt.sessions) as session:
        screen = await respond(session, rt, session_id=values["sessionId"],
                               phone=values["phoneNumber"], text=values["text"])
    return PlainTextResponse(screen)
