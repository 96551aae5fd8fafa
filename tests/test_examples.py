"""The sample import files in docs/examples are real: both import cleanly through the
same importers the CLI uses, and say what the docs say they do."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import select

from openmvno.catalog import service as catalog
from openmvno.catalog.models import Plan
from openmvno.db import unit_of_work
from openmvno.lines.importer import import_lines
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.runtime import Runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
GB = 1024**3


async def test_sample_plans_import_with_every_shorthand_expanded(rt: Runtime) -> None:
    document = yaml.safe_load((EXAMPLES / "plans.yaml").read_text(encoding="utf-8"))
    async with unit_of_work(rt.sessions) as s:
        summary = await catalog.import_plans(s, document, default_currency="CNY")
    assert summary.created == 4
    async with unit_of_work(rt.sessions) as s:
        plans = {p.code: p for p in await s.scalars(select(Plan))}
    assert plans["M30"].data_bytes == 10 * GB
    assert plans["M30"].voice_seconds == 100 * 60
    assert plans["M30"].price_minor == 5000
    assert plans["M30"].overage_rates == {"data_mb": 5, "voice_min": 15, "sms": 10}
    assert plans["M30"].roaming_rates == {"data_mb": 50, "voice_min": 200}
    assert plans["ASIA3G"].roaming_zones == ["HK", "MO", "TW", "JP", "KR", "SG", "TH"]
    assert plans["ASIA3G"].data_bytes == 3 * GB
    assert plans["D90"].data_bytes == 50 * GB
    assert plans["TOPUP50"].data_bytes == 0
    # Importing the same file again changes nothing.
    async with unit_of_work(rt.sessions) as s:
        again = await catalog.import_plans(s, document, default_currency="CNY")
    assert again.created == 0


async def test_sample_lines_import_as_stock(rt: Runtime) -> None:
    text = (EXAMPLES / "lines.csv").read_text(encoding="utf-8")
    async with unit_of_work(rt.sessions) as s:
        summary = await import_lines(s, rt, text)
    assert summary.created == 4
    async with unit_of_work(rt.sessions) as s:
        lines = list(await s.scalars(select(Line).order_by(Line.iccid)))
    assert [line.kind for line in lines] == [LineKind.esim, LineKind.esim, LineKind.sim,
                                             LineKind.datacard]
    assert {line.state for line in lines} == {LineState.inventory}
    assert lines[3].msisdn == "+8613812340004"  # national format read in the default region
