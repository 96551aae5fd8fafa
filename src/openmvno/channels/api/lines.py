"""/api/v1/me/lines, /api/v1/lines/{id} (+ eSIM) and /api/v1/devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from openmvno import fields
from openmvno.channels.api.schemas import PROBLEMS
from openmvno.fields import Strict
from openmvno.lines import esim
from openmvno.lines import service as lines
from openmvno.lines.models import LineKind, LineState
from openmvno.lines.service import LineView
from openmvno.web.deps import RT, Language, Me, Session

router = APIRouter(prefix="/api/v1", tags=["lines"], responses=PROBLEMS)  # type: ignore[arg-type]


class LinePlanOut(BaseModel):
    code: str
    name: str
    name_zh: str
    name_en: str
    on_sale: bool


class LineOut(BaseModel):
    id: uuid.UUID
    kind: LineKind
    msisdn: str
    iccid: str
    state: LineState
    may_use_service: bool
    plan: LinePlanOut | None
    expires_at: datetime | None
    auto_renew: bool
    device_serial: str | None
    bound_at: datetime | None
    esim_url: str | None = Field(description="Where to fetch the eSIM activation code")


class BindIn(Strict):
    serial: Annotated[str, fields.text(80, min_length=1, form="NFKC")] = Field(
        description="As printed; any case/spacing"
    )
    secret: Annotated[str, fields.text(40, min_length=1, form="NFKC")] = Field(
        description="PIN printed with the serial"
    )


class EsimOut(BaseModel):
    activation_code: str
    qr_png_url: str
    qr_svg_url: str
    install_steps: list[str]


def line_out(v: LineView, language: str, request: Request) -> LineOut:
    plan = None
    if v.plan_code is not None:
        plan = LinePlanOut(
            code=v.plan_code,
            name=v.plan_name(language) or v.plan_code,
            name_zh=v.plan_name_zh or "",
            name_en=v.plan_name_en or "",
            on_sale=bool(v.plan_active),
        )
    return LineOut(
        id=v.id,
        kind=v.kind,
        msisdn=v.msisdn,
        iccid=v.iccid,
        state=v.state,
        may_use_service=v.may_use_service,
        plan=plan,
        expires_at=v.expires_at,
        auto_renew=v.auto_renew,
        device_serial=v.device_serial,
        bound_at=v.bound_at,
        esim_url=str(request.url_for("line_esim", line_id=v.id)) if v.has_esim_profile else None,
    )


@router.get("/me/lines")
async def my_lines(request: Request, session: Session, me: Me, language: Language) -> list[LineOut]:
    """My lines with plan, state, expiry and device."""
    return [line_out(v, language, request) for v in await lines.list_for_account(session, me.id)]


@router.get("/lines/{line_id}")
async def get_line(
    line_id: uuid.UUID, request: Request, session: Session, me: Me, language: Language
) -> LineOut:
    """One of my lines (anyone else's is 404)."""
    line = await lines.get_owned(session, account_id=me.id, line_id=line_id)
    return line_out(await lines.view(session, line), language, request)


@router.get("/lines/{line_id}/esim", name="line_esim")
async def line_esim(
    line_id: uuid.UUID, request: Request, session: Session, rt: RT, me: Me, language: Language
) -> EsimOut:
    """The eSIM activation code (`LPA:1$<SM-DP+>$<matching id>`), QR links and install steps."""
    line = await lines.get_owned(session, account_id=me.id, line_id=line_id)
    code = esim.activation_code(rt, line)
    return EsimOut(
        activation_code=code,
        qr_png_url=str(request.url_for("line_esim_png", line_id=line.id)),
        qr_svg_url=str(request.url_for("line_esim_svg", line_id=line.id)),
        install_steps=esim.install_steps(language),
    )


_PRIVATE = {"Cache-Control": "private, no-store"}


@router.get(
    "/lines/{line_id}/esim.png",
    name="line_esim_png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def line_esim_png(line_id: uuid.UUID, session: Session, rt: RT, me: Me) -> Response:
    """The activation code as a QR PNG."""
    line = await lines.get_owned(session, account_id=me.id, line_id=line_id)
    png = esim.qr_png(esim.activation_code(rt, line))
    return Response(png, media_type="image/png", headers=_PRIVATE)


@router.get(
    "/lines/{line_id}/esim.svg",
    name="line_esim_svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def line_esim_svg(line_id: uuid.UUID, session: Session, rt: RT, me: Me) -> Response:
    """The activation code as a QR SVG."""
    line = await lines.get_owned(session, account_id=me.id, line_id=line_id)
    svg = esim.qr_svg(esim.activation_code(rt, line))
    return Response(svg, media_type="image/svg+xml", headers=_PRIVATE)


@router.post("/devices/bind")
async def bind_device(
    body: BindIn, request: Request, session: Session, rt: RT, me: Me, language: Language
) -> LineOut:
    """Bind a SIM or data card by its serial and PIN. Wrong tries are limited per account."""
    line = await lines.bind_device(session, rt, account=me, serial=body.serial, secret=body.secret)
    return line_out(await lines.view(session, line), language, request)


@router.delete("/devices/{line_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unbind_device(line_id: uuid.UUID, session: Session, me: Me) -> Response:
    """Unbind my device; the line keeps its state and plan, and auto-renew stops."""
    await lines.unbind_device(session, account=me, line_id=line_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
