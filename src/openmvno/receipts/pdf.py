"""PDF receipts with fpdf2 and a CJK font from the system (Debian: ``fonts-noto-cjk``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fpdf import FPDF

from openmvno.receipts.models import Receipt
from openmvno.receipts.service import context

CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
)


class FontMissing(RuntimeError):
    """No CJK font: install Debian's fonts-noto-cjk or set OPENMVNO_RECEIPT_FONT_PATH."""


@cache
def cjk_font(configured: str = "") -> tuple[str, int]:
    """The font file and, in a collection (.ttc), the index of its Simplified Chinese face."""
    from fontTools.ttLib import TTCollection  # type: ignore[import-untyped]

    for path in ([configured] if configured else []) + list(CANDIDATES):
        if not path or not Path(path).is_file():
            continue
        if not path.lower().endswith(".ttc"):
            return path, 0
        with TTCollection(path, lazy=True) as collection:
            for index, font in enumerate(collection.fonts):
                family = str(font["name"].getDebugName(1) or "")
                if family.endswith(" SC") or "Hei" in family or "Ming" in family:
                    return path, index
        return path, 0
    raise FontMissing(
        "No CJK font found for PDF receipts: install fonts-noto-cjk "
        "or set OPENMVNO_RECEIPT_FONT_PATH"
    )


def render_pdf(receipt: Receipt, *, language: str, operator: str, font_path: str = "") -> bytes:
    """An A4 PDF receipt; Chinese and Latin text both render with the CJK font."""
    ctx = context(receipt, language=language, operator=operator)
    t = ctx["t"]
    path, index = cjk_font(font_path)
    pdf = FPDF(format="A4")
    pdf.set_title(f"{t('Receipt')} {receipt.number}")
    pdf.set_creator(operator)
    pdf.add_font("cjk", fname=path, collection_font_number=index)
    pdf.add_font("cjk", style="B", fname=path, collection_font_number=index)  # table heads
    pdf.add_page()
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, f"{operator} — {t('Receipt')}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    facts = [
        (t("Receipt number"), ctx["number"]),
        (t("Issued"), ctx["issued"]),
        (t("Customer"), ctx["buyer"]),
        (t("Phone number"), ctx["msisdn"]),
        (t("Payment method"), ctx["method"]),
    ]
    for label, value in facts:
        if value:
            pdf.cell(45, 8, label)
            pdf.cell(0, 8, str(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    with pdf.table(col_widths=(110, 25, 45), text_align=("LEFT", "CENTER", "RIGHT")) as table:
        table.row([t("Item"), t("Quantity"), t("Amount")])
        for item in ctx["items"]:
            table.row([item["name"], str(item["quantity"]), item["amount"]])
        table.row([t("Total"), "", ctx["total"]])
    return bytes(pdf.output())
