"""Stock for lines tests, loaded through the real CSV importer."""

from __future__ import annotations

import uuid

from openmvno.db import unit_of_work
from openmvno.lines.identifiers import luhn_complete
from openmvno.lines.importer import import_lines
from openmvno.runtime import Runtime

HEADER = "kind,iccid,msisdn,device_serial,esim_matching_id,pin\n"


def iccid(n: int) -> str:
    return luhn_complete(f"898600{n:012d}")


def msisdn(n: int) -> str:
    return f"+86170{n:08d}"


async def load(rt: Runtime, rows: list[str]) -> None:
    async with unit_of_work(rt.sessions) as session:
        await import_lines(session, rt, HEADER + "\n".join(rows) + "\n")


async def account_id(client: object, headers: dict[str, str]) -> uuid.UUID:
    r = await client.get("/api/v1/me", headers=headers)  # type: ignore[attr-defined]
    return uuid.UUID(r.json()["id"])
