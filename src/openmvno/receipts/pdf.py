"""PDF receipts with fpdf2 and a CJK font from the system (Debian: ``fonts-noto-cjk``).

A CJK collection face has ~65,000 glyphs; fpdf2 parses and subsets the font it is given
for every document, which took 1.7–3.9 s a receipt. So once per process (per font) the
face is cut down to a working font: every character a receipt is likely to hold (ASCII,
Latin letters, punctuation, currency signs, full-width forms, the 7,445 characters of
GB 2312 — the common Chinese characters, kana, Greek, Cyrillic — and every character of
the Chinese catalog). Each receipt is then drawn with that (about 7,500 glyphs, tens of
milliseconds). A receipt with a character outside it (a rare character in a name) is
drawn with the full face, as before: slower, never a missing glyph.

The working font is kept in the cache directory (``OPENMVNO_CACHE_DIR``, by default
``data_dir/cache``), named by the face's file (path, size, modification time), the face's
index, fontTools' version and the character set: the next process, or the next start,
reads it (a fraction of a second) instead of making it again. A file there that does not
read as a font is made again.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from openmvno.config import Settings
from openmvno.receipts.models import Receipt
from openmvno.receipts.service import context

CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
)
log = logging.getLogger("openmvno.receipts")
HEADINGS = FontFace(emphasis="", fill_color=(238, 242, 246))
"""Table heads: shaded, in the one face (a bold face would be a second font to embed)."""


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


@cache
def working_charset() -> frozenset[int]:
    """The characters of the working font (see the module's docstring)."""
    chars: set[int] = set(range(0x20, 0x7F)) | set(range(0xA0, 0x250))
    for start, end in ((0x2000, 0x2070), (0x20A0, 0x20C1), (0x2100, 0x2200),
                       (0x3000, 0x3040), (0xFF00, 0xFFF0)):
        chars |= set(range(start, end))
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            with contextlib.suppress(UnicodeDecodeError):
                chars.update(map(ord, bytes((high, low)).decode("gb2312")))
    from openmvno.i18n import _catalog

    for text in _catalog("zh-CN").values():
        chars.update(ord(ch) for ch in text if ord(ch) >= 0x20)
    return frozenset(chars)


@dataclass(frozen=True)
class WorkingFont:
    """A face cut down to :func:`working_charset`, in a file (fpdf2 reads fonts from
    files), and the characters the face and it can draw."""

    path: str
    covers: frozenset[int]
    full_covers: frozenset[int]


_lock = threading.Lock()
_working: dict[tuple[str, int, str], WorkingFont] = {}
_cache_dir: list[str] = []


def _private_dir() -> str:
    if not _cache_dir or not os.path.isdir(_cache_dir[-1]):
        made = tempfile.mkdtemp(prefix="openmvno-fonts-")  # mode 0700: this user only
        atexit.register(shutil.rmtree, made, True)
        _cache_dir.append(made)
    return _cache_dir[-1]


def cached_name(path: str, index: int) -> str:
    """The working font's file name in the cache directory: it changes whenever the face's
    file, the face, fontTools or the character set does."""
    import fontTools  # type: ignore[import-untyped]

    stat = os.stat(path)
    identity = repr((os.path.realpath(path), stat.st_size, stat.st_mtime_ns, index,
                     fontTools.version, sorted(working_charset())))
    return f"{Path(path).stem}-{index}-{hashlib.sha256(identity.encode()).hexdigest()[:24]}.otf"


@dataclass(frozen=True)
class _Cut:
    data: bytes
    covers: frozenset[int]
    full_covers: frozenset[int]


def _build(path: str, index: int) -> _Cut:
    """Cut the face down to the working character set (the ~10 s of CPU)."""
    from fontTools import subset as ftsubset
    from fontTools.ttLib import TTFont

    # No bounding boxes recomputed on save: the full face's are a true (larger) bound,
    # and recomputing them from every outline is most of the cost.
    face = TTFont(path, fontNumber=index, lazy=True, recalcTimestamp=False,
                  recalcBBoxes=False)
    try:
        full = frozenset(face.getBestCmap() or {})
        options = ftsubset.Options(
            notdef_outline=True, recommended_glyphs=True, layout_features=[],
            name_IDs=["*"], desubroutinize=True,
        )
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "JSTF", "VORG", "vhea", "vmtx"]
        subsetter = ftsubset.Subsetter(options)
        subsetter.populate(unicodes=working_charset() & full)
        subsetter.subset(face)
        covers = frozenset(face.getBestCmap() or {})
        data = io.BytesIO()
        face.save(data)
    finally:
        face.close()
    return _Cut(data.getvalue(), covers, full)


def _keep(cut: _Cut, out: str) -> WorkingFont:
    """Write the cut font to ``out``, whole or not at all (a reader never sees half)."""
    fd, part = tempfile.mkstemp(suffix=".part", dir=os.path.dirname(out))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cut.data)
        os.replace(part, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    return WorkingFont(out, cut.covers, cut.full_covers)


def _read_kept(path: str, index: int, kept: str) -> WorkingFont | None:
    """The working font a process made before, if ``kept`` reads as one."""
    from fontTools.ttLib import TTFont

    if not os.path.isfile(kept):
        return None
    try:
        with TTFont(kept, lazy=True) as small:
            covers = frozenset(small.getBestCmap() or {})
        with TTFont(path, fontNumber=index, lazy=True) as face:
            full = frozenset(face.getBestCmap() or {})
    except Exception:  # noqa: BLE001 - a damaged file is made again, whatever the damage
        log.warning("receipt font in the cache unreadable, making it again",
                    extra={"font": kept})
        return None
    return WorkingFont(kept, covers, full) if covers else None


def working_font(path: str, index: int, cache_dir: str = "") -> WorkingFont:
    """The working font of a face: read from ``cache_dir`` when a process made it before,
    else made (and kept there; without a cache directory, in a private temporary one for
    this process). Kept in memory for the process, and found or made again if its file
    went away (say a temporary directory was cleaned)."""
    key = (path, index, cache_dir)
    found = _working.get(key)
    if found is None or not os.path.isfile(found.path):
        with _lock:  # two first receipts at once make it once
            found = _working.get(key)
            if found is None or not os.path.isfile(found.path):
                found = _working[key] = _find_or_build(path, index, cache_dir)
    return found


def _find_or_build(path: str, index: int, cache_dir: str) -> WorkingFont:
    name = cached_name(path, index)
    cut: _Cut | None = None
    if cache_dir:
        out = os.path.join(cache_dir, name)
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            kept = _read_kept(path, index, out)
            if kept is not None:
                return kept
            cut = _timed_build(path, index)
            return _keep(cut, out)
        except OSError as exc:  # no place to keep it: a receipt is still drawn
            log.warning("receipt font cache not writable; keeping the font for this process",
                        extra={"dir": cache_dir, "error": str(exc)})
    return _keep(cut or _timed_build(path, index), os.path.join(_private_dir(), name))


def _timed_build(path: str, index: int) -> _Cut:
    started = time.perf_counter()
    cut = _build(path, index)
    log.info("receipt font prepared", extra={
        "font": path, "glyphs": len(cut.covers),
        "ms": round((time.perf_counter() - started) * 1000)})
    return cut


def _font_for(texts: Iterable[str], font_path: str, cache_dir: str) -> tuple[str, int]:
    """The file and face index to draw ``texts`` with: the working font when it has every
    character the full face has, else the full face."""
    path, index = cjk_font(font_path)
    work = working_font(path, index, cache_dir)
    wanted = {ord(ch) for text in texts for ch in text if not ch.isspace()}
    missing = wanted - work.covers
    if missing & work.full_covers:
        return path, index
    return work.path, 0


def render_pdf(receipt: Receipt, *, language: str, operator: str, font_path: str = "",
               cache_dir: str = "") -> bytes:
    """An A4 PDF receipt; Chinese and Latin text both render with the CJK font (its
    working font kept in ``cache_dir``: settings.font_cache_dir)."""
    ctx = context(receipt, language=language, operator=operator)
    t = ctx["t"]
    facts = [
        (t("Receipt number"), ctx["number"]),
        (t("Issued"), ctx["issued"]),
        (t("Customer"), ctx["buyer"]),
        (t("Phone number"), ctx["msisdn"]),
        (t("Payment method"), ctx["method"]),
    ]
    head = [t("Item"), t("Quantity"), t("Amount")]
    rows = [[item["name"], str(item["quantity"]), item["amount"]] for item in ctx["items"]]
    rows.append([t("Total"), "", ctx["total"]])
    title = f"{operator} — {t('Receipt')}"
    texts = [title, *(f"{label}{value}" for label, value in facts), *head,
             *(cell for row in rows for cell in row)]
    path, index = _font_for(texts, font_path, cache_dir)

    pdf = FPDF(format="A4")
    pdf.set_title(f"{t('Receipt')} {receipt.number}")
    pdf.set_creator(operator)
    pdf.add_font("cjk", fname=path, collection_font_number=index)
    pdf.add_page()
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    for label, value in facts:
        if value:
            pdf.cell(45, 8, label)
            pdf.cell(0, 8, str(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    with pdf.table(col_widths=(110, 25, 45), text_align=("LEFT", "CENTER", "RIGHT"),
                   headings_style=HEADINGS) as table:
        table.row(head)
        for row in rows:
            table.row(row)
    return bytes(pdf.output())


async def render_pdf_off_loop(receipt: Receipt, *, language: str, settings: Settings) -> bytes:
    """:func:`render_pdf` with the operator's settings, in a worker thread: the first
    receipt of a process cuts the working font (seconds of CPU), and no other request
    of the process should wait for that."""
    return await asyncio.to_thread(
        render_pdf, receipt, language=language, operator=settings.operator_name,
        font_path=settings.receipt_font_path, cache_dir=settings.font_cache_dir,
    )
