"""eSIM activation codes (GSMA SGP.22) and their QR codes."""

from __future__ import annotations

import io

import segno

from openmvno.errors import NotFound
from openmvno.i18n import N_, translate
from openmvno.lines.models import Line, LineKind
from openmvno.runtime import Runtime

INSTALL_STEPS = (
    N_("Connect the phone to Wi-Fi."),
    N_("iPhone: Settings → Mobile Service → Add eSIM → Use QR Code. "
       "Android: Settings → Network & internet → SIMs → Download a SIM instead."),
    N_("Scan the QR code, or enter the activation code by hand."),
    N_("Keep the eSIM on and turn on data roaming only if your plan includes the zone."),
)


def activation_code(rt: Runtime, line: Line) -> str:
    """``LPA:1$<SM-DP+ address>$<matching id>`` for an eSIM line."""
    if line.kind != LineKind.esim or not line.esim_matching_id:
        raise NotFound("not_an_esim", "This line is not an eSIM.")
    return f"LPA:1${rt.settings.smdp_address}${line.esim_matching_id}"


def install_steps(language: str) -> list[str]:
    return [translate(language, step) for step in INSTALL_STEPS]


def _qr(code: str) -> segno.QRCode:
    return segno.make(code, error="m", micro=False)


def qr_png(code: str) -> bytes:
    """The activation code as a PNG QR image."""
    out = io.BytesIO()
    _qr(code).save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def qr_svg(code: str) -> str:
    """The activation code as a standalone SVG QR image."""
    out = io.BytesIO()
    _qr(code).save(out, kind="svg", scale=8, border=4, xmldecl=False, title="eSIM")
    return out.getvalue().decode()
