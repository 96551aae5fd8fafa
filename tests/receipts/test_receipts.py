"""Receipts: sequential numbers, owner/staff only, JSON, HTML and a PDF with Chinese text."""

from __future__ import annotations

import asyncio
import re
import threading
import zlib

import httpx
import pytest

from openmvno.db import unit_of_work
from openmvno.receipts import pdf as receipt_pdf
from openmvno.receipts.pdf import cjk_font
from openmvno.receipts.service import next_value
from openmvno.runtime import Runtime
from tests.orders.helpers import fund_wallet, give_line, order, pay, seed_plans, staff, subscriber


async def _bought(
    client: httpx.AsyncClient, rt: Runtime, n: int = 1
) -> tuple[dict[str, str], list[str]]:
    await seed_plans(rt)
    headers, me = await subscriber(client, name="王小明")
    line = await give_line(rt, me)
    await fund_wallet(rt, me, 1500 * n)
    receipts = []
    for _ in range(n):
        o = (await order(client, headers, {"kind": "plan", "plan_code": "D7",
                                           "line_id": str(line.id)})).json()
        assert (await pay(client, headers, o["id"], "wallet")).status_code == 201
        got = (await client.get(f"/api/v1/orders/{o['id']}", headers=headers)).json()
        receipts.append(got["result"]["receipt_id"])
    return headers, receipts


async def test_numbers_are_sequential_and_listed_newest_first(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    headers, ids = await _bought(client, rt, 3)
    mine = (await client.get("/api/v1/receipts", headers=headers)).json()
    assert mine["total"] == 3
    numbers = [r["number"] for r in mine["items"]]
    assert all(re.fullmatch(r"R\d{4}-\d{6}", n) for n in numbers)
    assert sorted(int(n[-6:]) for n in numbers) == [1, 2, 3]
    one = (await client.get(f"/api/v1/receipts/{ids[0]}", headers=headers)).json()
    assert one["total_minor"] == 1500
    assert one["payment_method"] == "wallet"
    assert one["items"][0]["name_zh"] == "7天流量"


async def test_the_sequence_has_no_gaps_under_concurrency(rt: Runtime) -> None:
    async def take() -> int:
        async with unit_of_work(rt.sessions) as s:
            return await next_value(s, "test-seq")

    values = await asyncio.gather(*[take() for _ in range(30)])
    assert sorted(values) == list(range(1, 31))


async def test_only_the_owner_and_staff_can_fetch_a_receipt(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    _, ids = await _bought(client, rt)
    stranger, _ = await subscriber(client)
    for suffix in ("", ".html", ".pdf"):
        r = await client.get(f"/api/v1/receipts/{ids[0]}{suffix}", headers=stranger)
        assert r.status_code == 404
    agent = await staff(client, rt)
    assert (await client.get(f"/api/v1/receipts/{ids[0]}", headers=agent)).status_code == 200
    assert (await client.get(f"/api/v1/receipts/{ids[0]}")).status_code == 401


async def test_html_and_pdf_in_chinese(client: httpx.AsyncClient, rt: Runtime) -> None:
    headers, ids = await _bought(client, rt)
    zh = {**headers, "Accept-Language": "zh-CN"}
    html = await client.get(f"/api/v1/receipts/{ids[0]}.html", headers=zh)
    assert html.status_code == 200
    assert "收据编号" in html.text
    assert "7天流量" in html.text
    assert "王小明" in html.text
    assert "¥15.00" in html.text
    pdf = await client.get(f"/api/v1/receipts/{ids[0]}.pdf", headers=zh)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert b"NotoSansCJK" in pdf.content or b"Noto" in pdf.content  # the CJK font is embedded
    text = _pdf_unicode_text(pdf.content)
    for word in ("收据", "7天流量", "王小明", "合计"):
        assert all(ch in text for ch in word), word


async def test_a_receipt_being_drawn_keeps_no_other_request_waiting(
    client: httpx.AsyncClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first PDF of a process cuts the font (seconds of CPU): while one is drawn, the
    process answers other requests. The drawing here waits until the test has had its
    answer to another request; drawn on the event loop it would wait in vain."""
    headers, ids = await _bought(client, rt)
    drawing, release = threading.Event(), threading.Event()
    released: list[bool] = []
    draw = receipt_pdf.render_pdf

    def held_draw(*args: object, **kwargs: object) -> bytes:
        drawing.set()
        released.append(release.wait(timeout=10))
        return draw(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(receipt_pdf, "render_pdf", held_draw)
    fetch = asyncio.create_task(client.get(f"/api/v1/receipts/{ids[0]}.pdf", headers=headers))
    assert await asyncio.to_thread(drawing.wait, 10)
    meanwhile = await client.get(f"/api/v1/receipts/{ids[0]}", headers=headers)
    assert meanwhile.status_code == 200
    release.set()
    got = await fetch
    assert got.status_code == 200
    assert got.content.startswith(b"%PDF")
    assert released == [True]


def test_a_simplified_chinese_face_is_found() -> None:
    path, index = cjk_font()
    assert path.endswith((".ttc", ".ttf", ".otf"))
    assert index >= 0


def _pdf_unicode_text(data: bytes) -> str:
    """The characters the PDF maps its glyphs to (ToUnicode CMaps): enough to know the
    Chinese text was drawn with real glyphs rather than dropped."""
    chars: list[str] = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            raw = zlib.decompress(stream)
        except zlib.error:
            raw = stream  # fpdf2 writes the ToUnicode CMaps uncompressed
        for hexcode in re.findall(rb"<[0-9A-Fa-f]+>\s*<([0-9A-Fa-f]{4,8})>", raw):
            try:
                chars.append(bytes.fromhex(hexcode.decode()).decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError):
                continue
    return "".join(chars)
