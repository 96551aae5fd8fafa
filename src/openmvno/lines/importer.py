"""Load SIM / eSIM / data-card stock from CSV, all or nothing.

Columns: ``kind, iccid, msisdn, device_serial, esim_matching_id[, pin]``. Every bad row is
reported with its line number in the file (the header is line 1) and nothing is written
if any row is bad. The bind secret of a SIM or data card is its PIN if given, else the
last 6 digits of its ICCID; only a keyed digest of it is stored."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from openmvno import clock, fields
from openmvno.accounts.identity import normalize_phone
from openmvno.accounts.models import Account
from openmvno.audit import service as audit
from openmvno.catalog.imports import ImportRejected, ImportSummary, RowError
from openmvno.errors import InvalidInput
from openmvno.lines.identifiers import normalize_token, valid_iccid
from openmvno.lines.models import Line, LineKind, LineState
from openmvno.lines.service import bind_secret_hash
from openmvno.runtime import Runtime

REQUIRED = ("kind", "iccid", "msisdn", "device_serial", "esim_matching_id")
_SERIAL = re.compile(r"^[A-Z0-9]{4,40}$")
_MATCHING_ID = re.compile(r"^[A-Za-z0-9-]{4,64}$")
_PIN = re.compile(r"^[A-Z0-9]{4,12}$")
_CHUNK = 500
_CELL_MAX = 64
"""No column holds more (``esim_matching_id``); a longer cell is refused, not echoed."""


@dataclass(frozen=True, slots=True)
class _Row:
    lineno: int
    kind: LineKind
    iccid: str
    msisdn: str
    device_serial: str | None
    esim_matching_id: str | None
    secret: str | None


def _parse_row(rt: Runtime, lineno: int, raw: dict[str, Any]) -> tuple[_Row | None, list[str]]:
    problems: list[str] = []
    value: dict[str, str] = {}
    for k in (*REQUIRED, "pin"):
        try:
            value[k] = fields.clean_text(raw.get(k) or "", max_length=_CELL_MAX, form="NFKC")
        except ValueError:
            problems.append(
                f"{k} must be at most {_CELL_MAX} characters with no control characters"
            )
    if problems:
        return None, problems
    try:
        kind: LineKind | None = LineKind(value["kind"].lower())
    except ValueError:
        kind = None
        problems.append(f"kind {value['kind']!r} is not one of esim, sim, datacard")
    iccid = valid_iccid(value["iccid"])
    if iccid is None:
        digits = normalize_token(value["iccid"])
        if digits.isdigit() and 19 <= len(digits) <= 20:
            problems.append(f"ICCID {digits} fails the Luhn check (a digit is wrong)")
        else:
            problems.append(f"ICCID {value['iccid']!r} must be 19–20 digits")
    msisdn = None
    try:
        msisdn = normalize_phone(value["msisdn"], rt.settings.default_region)
    except InvalidInput:
        problems.append(f"MSISDN {value['msisdn']!r} is not a valid phone number")
    serial = normalize_token(value["device_serial"]) or None
    matching = value["esim_matching_id"] or None
    pin = normalize_token(value["pin"]) or None
    if kind is LineKind.esim:
        if matching is None:
            problems.append("an eSIM needs an esim_matching_id")
        elif not _MATCHING_ID.match(matching):
            problems.append(f"esim_matching_id {matching!r} must be 4–64 letters, digits or dashes")
        if serial:
            problems.append("an eSIM has no device_serial")
    elif kind is not None:
        if serial is None:
            problems.append(f"a {kind.value} needs a device_serial")
        elif not _SERIAL.match(serial):
            problems.append(
                f"device_serial {value['device_serial']!r} must be 4–40 letters or digits"
            )
        if matching:
            problems.append(f"a {kind.value} has no esim_matching_id")
    if pin is not None and not _PIN.match(pin):
        problems.append("pin must be 4–12 letters or digits")
    if problems or kind is None or iccid is None or msisdn is None:
        return None, problems
    secret = None if kind is LineKind.esim else (pin or iccid[-6:])
    return _Row(lineno, kind, iccid, msisdn, serial, matching, secret), []


async def _taken(
    session: AsyncSession, column: InstrumentedAttribute[Any], values: Iterable[str]
) -> set[str]:
    wanted = sorted(set(values))
    found: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        found.update(await session.scalars(select(column).where(column.in_(chunk))))
    return found


async def import_lines(
    session: AsyncSession, rt: Runtime, text: str, *, actor: Account | None = None
) -> ImportSummary:
    """Validate the whole CSV, then insert every line as ``inventory``; see the module doc."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportRejected([RowError(1, f"missing column(s): {', '.join(missing)}")])
    reader.fieldnames = header
    errors: list[RowError] = []
    rows: list[_Row] = []
    first_seen: dict[tuple[str, str], int] = {}
    for raw in reader:
        lineno = reader.line_num
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue
        row, problems = _parse_row(rt, lineno, raw)
        if row is not None:
            for label, value in (
                ("ICCID", row.iccid), ("MSISDN", row.msisdn),
                ("device_serial", row.device_serial), ("esim_matching_id", row.esim_matching_id),
            ):
                if value is None:
                    continue
                earlier = first_seen.setdefault((label, value), lineno)
                if earlier != lineno:
                    problems.append(f"{label} {value} repeats line {earlier}")
        if problems:
            errors.append(RowError(lineno, "; ".join(problems)))
        elif row is not None:
            rows.append(row)
    if not rows and not errors:
        raise ImportRejected([RowError(2, "the file has no lines")])
    checks: list[tuple[str, InstrumentedAttribute[Any], dict[str, int]]] = [
        ("ICCID", Line.iccid, {r.iccid: r.lineno for r in rows}),
        ("MSISDN", Line.msisdn, {r.msisdn: r.lineno for r in rows}),
        ("device_serial", Line.device_serial,
         {r.device_serial: r.lineno for r in rows if r.device_serial}),
        ("esim_matching_id", Line.esim_matching_id,
         {r.esim_matching_id: r.lineno for r in rows if r.esim_matching_id}),
    ]
    for label, column, by_value in checks:
        for value in sorted(await _taken(session, column, by_value)):
            errors.append(RowError(by_value[value], f"{label} {value} is already in the database"))
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: e.row))
    now = clock.now()
    values = [
        {
            "id": uuid.uuid4(),
            "kind": r.kind,
            "iccid": r.iccid,
            "msisdn": r.msisdn,
            "device_serial": r.device_serial,
            "esim_matching_id": r.esim_matching_id,
            "bind_secret_hash": bind_secret_hash(rt, r.secret) if r.secret else None,
            "state": LineState.inventory,
            "auto_renew": False,
            "state_changed_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for r in rows
    ]
    for i in range(0, len(values), _CHUNK):
        await session.execute(insert(Line), values[i : i + _CHUNK])
    counts = {k.value: sum(1 for r in rows if r.kind is k) for k in LineKind}
    await audit.record(
        session, actor=actor, action="lines.import", subject_type="line", subject_id="*",
        data={"created": len(rows), "by_kind": counts},
    )
    return ImportSummary(created=len(rows))
