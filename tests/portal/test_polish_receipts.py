"""Receipts: the HTML page is styled (its one style block allowed by the policy) with a
way back; PDF receipts make the CJK working font once, never per receipt, and keep it in
the cache directory, where later processes read it (a damaged or vanished file is made
again)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from openmvno.channels.security_headers import csp_hash
from openmvno.receipts import pdf
from openmvno.receipts.models import Receipt
from openmvno.runtime import Runtime
from tests.portal.helpers import text_of
from tests.portal.test_polish_pages import _guest_topup, _logout
from tests.portal.test_shop_pages import _card, _form, _give_line, _path, _seed, _subscriber
from tests.receipts.test_receipts import _pdf_unicode_text


def _receipt(buyer: str = "张小明", method: str = "alipay") -> Receipt:
    return Receipt(
        id=uuid.uuid4(), number="R2026-000042", order_id=uuid.uuid4(), account_id=None,
        buyer=buyer, msisdn="+8613800000000",
        items=[{"name_zh": "全能 20GB 套餐", "name_en": "All-in 20 GB", "quantity": 1,
                "amount_minor": 5900}],
        total_minor=5900, currency="CNY", payment_method=method,
        issued_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    )


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """A process with no working font made yet; lists each one made."""
    made: list[tuple[str, int]] = []
    real = pdf._build

    def counting(path: str, index: int) -> Any:
        made.append((path, index))
        return real(path, index)

    monkeypatch.setattr(pdf, "_working", {})
    monkeypatch.setattr(pdf, "_build", counting)
    return made


def _draws_receipts(data: bytes, *words: str) -> bool:
    text = _pdf_unicode_text(data)
    return data.startswith(b"%PDF") and b"NotoSansCJK" in data and all(
        ch in text for word in words for ch in word)


def test_pdf_receipts_make_the_cjk_font_once_and_later_processes_read_it(
    builds: list[tuple[str, int]], tmp_path: Path
) -> None:
    cache = str(tmp_path / "cache" / "fonts")
    first = pdf.render_pdf(_receipt(), language="zh-CN", operator="OpenMVNO", cache_dir=cache)
    second = pdf.render_pdf(_receipt(buyer="Li Lei", method="card"), language="en",
                            operator="OpenMVNO", cache_dir=cache)
    third = pdf.render_pdf(_receipt(buyer="韩梅梅"), language="zh-CN", operator="OpenMVNO",
                           cache_dir=cache)
    assert len(builds) == 1
    assert _draws_receipts(first, "收据", "张小明", "全能", "支付宝", "合计")
    assert _draws_receipts(third, "韩梅梅") and _draws_receipts(second, "ReceiptAlli")
    path, index = pdf.cjk_font()
    kept = Path(cache) / pdf.cached_name(path, index)
    assert [p.name for p in Path(cache).iterdir()] == [kept.name]

    pdf._working.clear()  # a process started later reads it
    again = pdf.render_pdf(_receipt(buyer="李雷"), language="zh-CN", operator="OpenMVNO",
                           cache_dir=cache)
    assert len(builds) == 1 and _draws_receipts(again, "李雷", "收据")

    kept.write_bytes(b"not a font")  # damaged (a disk that filled up, say)
    pdf._working.clear()
    mended = pdf.render_pdf(_receipt(), language="zh-CN", operator="OpenMVNO", cache_dir=cache)
    assert len(builds) == 2 and _draws_receipts(mended, "张小明")
    assert kept.read_bytes()[:4] == b"OTTO"  # made again in its place, whole
    assert [p.name for p in Path(cache).iterdir()] == [kept.name]  # nothing half-written


def test_a_character_outside_the_working_font_is_still_drawn(
    builds: list[tuple[str, int]], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    nowhere = str(tmp_path / "a-file" / "fonts")  # a cache directory that cannot be made
    path, index = pdf.cjk_font()
    rare = "堃"  # common in names, not in GB 2312
    assert ord(rare) not in pdf.working_font(path, index, nowhere).covers
    data = pdf.render_pdf(_receipt(buyer=f"王{rare}"), language="zh-CN", operator="OpenMVNO",
                          cache_dir=nowhere)
    assert rare in _pdf_unicode_text(data) and "王" in _pdf_unicode_text(data)
    assert len(builds) == 1  # made once, kept for the process though not in the cache


async def test_the_receipt_page_is_styled_by_its_allowed_block_and_leads_back(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await _seed(rt)
    login = await _subscriber(client, "13800138950")
    line_id, msisdn = await _give_line(rt, login)
    confirm = await client.get(f"/buy?plan=S-ADD&line={line_id}")
    r = await client.post("/buy", data={**_form(confirm.text, "/buy"), "method": "card"})
    back = await _card(client, r.headers["location"], "4242424242424242")
    result = await client.get(_path(back.headers["location"]) + "&lang=en")
    href = re.search(r'href="(/receipts/[0-9a-f-]{36})" data-test="receipt-link"', result.text)
    assert href
    order_path = _path(back.headers["location"]).split("/result")[0]
    page = await client.get(href.group(1) + "?lang=en")
    assert page.status_code == 200
    styles = re.findall(r"<style>(.*?)</style>", page.text, flags=re.S)
    assert len(styles) == 1 and "main.receipt" in styles[0]
    assert csp_hash(styles[0]) in page.headers["content-security-policy"]
    assert 'href="/receipts" data-test="back-link"' in page.text
    assert f'href="{order_path}" data-test="back-link"' in page.text
    assert f'href="{href.group(1)}.pdf"' in page.text
    assert "My receipts" in text_of(page.text) and "Order details" in text_of(page.text)

    # A guest's receipt leads back to the guest's order page.
    await _logout(client)
    guest = (await _guest_topup(client, msisdn, "20")).split("?")[0]
    page = await client.get(guest + "/receipt?lang=zh-CN")
    assert f'href="{guest}" data-test="back-link"' in page.text and "返回订单" in page.text
    assert f'href="{guest}/receipt.pdf"' in page.text
    assert csp_hash(re.findall(r"<style>(.*?)</style>", page.text, flags=re.S)[0]) in (
        page.headers["content-security-policy"]
    )


def test_the_working_font_is_made_again_if_its_file_went_away(
    builds: list[tuple[str, int]],
) -> None:
    path, index = pdf.cjk_font()
    first = pdf.working_font(path, index)
    shutil.rmtree(Path(first.path).parent)  # a cleaned temporary directory
    data = pdf.render_pdf(_receipt(), language="zh-CN", operator="OpenMVNO")
    assert data.startswith(b"%PDF") and len(builds) == 2
    assert Path(pdf.working_font(path, index).path).is_file()


def test_the_kept_font_is_named_by_the_face_file_it_was_cut_from(tmp_path: Path) -> None:
    path, index = pdf.cjk_font()
    copy = tmp_path / Path(path).name
    shutil.copyfile(path, copy)
    named = pdf.cached_name(str(copy), index)
    assert named == pdf.cached_name(str(copy), index)
    assert named != pdf.cached_name(str(copy), index + 1)  # another face of the collection
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a new package
    assert pdf.cached_name(str(copy), index) != named
