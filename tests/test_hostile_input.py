"""Hostile input, held against the real app on the test database (SQLite, or PostgreSQL
with ``OPENMVNO_TEST_DATABASE_URL``): whatever a caller sends, the answer is a 4xx, never a
5xx; an API answer is a problem body (``application/problem+json`` with a stable
``code``), a portal answer an HTML page or a redirect; and a refused request stores
nothing.

The corpus is built from the app itself, so a new route or field is covered without
touching this file:

* API: every operation of the published OpenAPI schema; every path, query and header
  parameter; every body field (nested arrays and maps too), each given the attacks for its
  type — strings: NUL, a lone surrogate, 10,000 characters, 10,000 Chinese characters,
  control characters only, a bidi override, a number; integers: -1, 2**63, 2**64, 1e400,
  Infinity, NaN, "12", 1.5, true; arrays: 10,000 items; plus per body: JSON 1,000 deep, a
  value nested 40 deep, a top-level array of 10,000 items, unknown keys that are a lone
  surrogate or 10,000 characters long.
* Portal: every page (GET route) is fetched as a logged-in subscriber and every form on
  it — and on the pages its baseline submission leads to — is posted with each string
  attack in each field; every page gets the attacks in its query string.
* Webhooks: signed sandbox events with hostile ids, amounts and currencies.

Each parametrised test prints ``corpus <target>: N cases, M server errors``;
``test_corpus_size`` prints the total (run with ``-s`` to see them).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    cast,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.engine import Dialect

from openmvno import clock
from openmvno.accounts import service as accounts
from openmvno.accounts.models import Role
from openmvno.adapters.payments import sandbox
from openmvno.app import create_app
from openmvno.audit.models import AuditEvent
from openmvno.config import SANDBOX_TEST_WEBHOOK_SECRET, Settings
from openmvno.db import unit_of_work
from openmvno.lines.models import Line
from openmvno.models import Base
from openmvno.runtime import Runtime
from tests.conftest import app_for, last_code
from tests.orders.helpers import fund_wallet, give_line, seed_plans

PASSWORD = "Quiet-river-2026"
ADMIN_EMAIL = "hostile-admin@example.com"

# ---------------------------------------------------------------- the attacks

STRING_ATTACKS: dict[str, Any] = {
    "nul": "a\x00b",
    "lone_surrogate": "\ud800",
    "over_long": "x" * 10_000,
    "chinese_10k": "张" * 10_000,
    "control_only": "\x01\x02\x1f",
    "bidi_override": "\u202egnp.exe",
    "number": 7,
}
INT_ATTACKS: dict[str, str] = {  # raw JSON tokens
    "minus_one": "-1",
    "two_pow_63": str(2**63),
    "two_pow_64": str(2**64),
    "1e400": "1e400",
    "infinity": "Infinity",
    "nan": "NaN",
    "string": '"12"',
    "float": "1.5",
    "bool": "true",
}
PATH_ATTACKS: dict[str, str] = {  # already percent-encoded
    "nul": "a%00b",
    "nul_only": "%00",
    "lone_surrogate": "%ED%A0%80",
    "overlong_utf8": "%C0%80",
    "over_long": "x" * 5_000,
    "chinese_2k": quote("张" * 2_000),
    "minus_one": "-1",
    "huge_number": str(2**64),
    "control": "%01%02",
}
QUERY_STRING_ATTACKS: dict[str, str] = {  # already percent-encoded (URLs stay < 64 KiB)
    "nul": "a%00b",
    "lone_surrogate": "%ED%A0%80",
    "over_long": "x" * 3_000,
    "chinese_1k": quote("张" * 1_000),
    "control": "%01%02",
}
QUERY_INT_ATTACKS: dict[str, str] = {
    "minus_one": "-1",
    "two_pow_63": str(2**63),
    "two_pow_64": str(2**64),
    "1e400": "1e400",
    "infinity": "Infinity",
    "nan": "NaN",
    "float": "1.5",
    "letters": "abc",
    "nul": "1%00",
}
# Every query name of a portal page at once: shorter, so the URL stays < 64 KiB.
PORTAL_QUERY_ATTACKS = QUERY_STRING_ATTACKS | {
    "over_long": "x" * 1_000, "chinese_1k": quote("张" * 300)
}
HEADER_ATTACKS: dict[str, bytes] = {
    "over_long": b"x" * 10_000,
    "chinese": "张三".encode(),
    "control": b"a\x01b",
    "latin1": b"\xe9\xff",
}
RAW = "\u0000RAW\u0000"  # placeholder replaced by a raw JSON token


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def dump(body: Any, raw: str | None = None) -> bytes:
    """JSON with ``RAW`` (a marker string) replaced by the raw token ``raw``."""
    text = json.dumps(body)
    if raw is not None:
        text = text.replace(json.dumps(RAW), raw)
    return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------- the app's own schema

SPEC: dict[str, Any] = create_app(
    Settings(
        environment="development", database_url="sqlite+aiosqlite://", secret_key="x" * 32,  # type: ignore[arg-type]
        payment_provider="sandbox",
    )
).openapi()


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and drop ``null`` from ``anyOf`` (an optional field)."""
    while True:
        if "$ref" in schema:
            schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            options = [s for s in schema["anyOf"] if s.get("type") != "null"]
            schema = options[0]
        else:
            return schema


def kind_of(schema: dict[str, Any]) -> str:
    s = resolve(schema)
    if "enum" in s:
        return "enum"
    return str(s.get("type", "object" if "properties" in s else "any"))


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def body_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return resolve(content["application/json"]["schema"])


# ---------------------------------------------------------------- the world a test runs in


@dataclass
class World:
    """Real objects, so path parameters reach the database: plans, a line, orders."""

    rt: Runtime
    api: httpx.AsyncClient
    portal: httpx.AsyncClient
    phone: str
    msisdn: str
    line_id: str
    pending_order_id: str
    paid_order_id: str
    receipt_id: str
    reference: str
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    counter: int = 0
    peer_key: str = ""
    """A network peer's API key (``POST /api/v1/usage``)."""

    def fresh(self) -> int:
        self.counter += 1
        return self.counter

    def fresh_phone(self) -> str:
        return f"+86139{uuid.uuid4().int % 10**8:08d}"

    def path_value(self, name: str) -> str:
        return {
            "code": "M30", "line_id": self.line_id, "order_id": self.paid_order_id,
            "receipt_id": self.receipt_id, "provider": "sandbox", "reference": self.reference,
            "event": "wallet_low", "language": "en", "channel": "sms",
        }.get(name, "x")


async def _token(client: httpx.AsyncClient, login: str) -> dict[str, str]:
    r = await client.post("/api/v1/auth/token", json={"login": login, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
async def world(rt: Runtime) -> AsyncIterator[World]:
    app = app_for(rt)
    # A server error must arrive as the 500 answer a client would see, not as an exception.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    api = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)
    portal = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)
    async with api, portal:
        await seed_plans(rt)
        phone = f"+86138{uuid.uuid4().int % 10**8:08d}"
        r = await api.post("/api/v1/auth/register",
                           json={"name": "Hostile Tester", "phone": phone, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await api.post("/api/v1/auth/verify",
                           json={"login": phone, "code": await last_code(api, phone)})
        assert r.status_code == 200, r.text
        sub = await _token(api, phone)
        me = uuid.UUID((await api.get("/api/v1/me", headers=sub)).json()["id"])
        async with unit_of_work(rt.sessions) as session:
            await accounts.create_staff(session, rt, name="Hostile Admin", email=ADMIN_EMAIL,
                                        password=PASSWORD, role=Role.admin)
        admin = await _token(api, ADMIN_EMAIL)
        line = await give_line(rt, me)
        await fund_wallet(rt, me, 100_000)

        async def new_order() -> str:
            r = await api.post("/api/v1/orders", headers={**sub, "Idempotency-Key": uuid.uuid4().hex},
                               json={"kind": "plan", "plan_code": "D7", "line_id": str(line.id)})
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        paid = await new_order()
        r = await api.post(f"/api/v1/orders/{paid}/payments", json={"method": "wallet"},
                           headers=sub)
        assert r.status_code == 201, r.text
        receipt = (await api.get(f"/api/v1/orders/{paid}", headers=sub)).json()["result"]
        pending = await new_order()
        r = await api.post(f"/api/v1/orders/{pending}/payments", json={"method": "card"},
                           headers=sub)
        assert r.status_code == 201, r.text
        reference = r.json()["next_action"]["url"].rstrip("/").rsplit("/", 1)[1]
        page = await portal.get("/login")
        r = await portal.post("/login", data={"csrf": _csrf(page.text), "login": phone,
                                              "password": PASSWORD})
        assert r.status_code == 303, r.text
        from openmvno.usage import peers

        async with unit_of_work(rt.sessions) as session:
            _peer, peer_key = await peers.create(session, name="hostile-pgw")
        yield World(
            rt=rt, api=api, portal=portal, phone=phone, msisdn=line.msisdn,
            line_id=str(line.id), pending_order_id=pending, paid_order_id=paid,
            receipt_id=str(receipt["receipt_id"]), reference=reference,
            tokens={"subscriber": sub, "admin": admin}, peer_key=peer_key,
        )


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]*)"', page)
    assert m, "no csrf field"
    return html.unescape(m.group(1))


# ---------------------------------------------------------------- what "stored" means

# A refused attempt may be counted on purpose (rate limits, wrong codes, failed logins):
# those tables are not part of "nothing stored".
COUNTERS = {"rate_events", "bind_attempts", "one_time_codes"}
VOLATILE_COLUMNS = {"last_used_at", "updated_at", "failed_logins", "locked_until"}


async def snapshot(rt: Runtime, skip: frozenset[str] = frozenset()) -> dict[str, str]:
    """What is stored, per table: its row count and a digest of its rows (every column but
    :data:`VOLATILE_COLUMNS` and ``skip``), read in one statement (one round trip, not one
    per table: the corpus takes a snapshot around every case)."""
    texts: dict[str, list[str]] = {name: [] for name in _SNAPSHOT_TABLES}
    async with rt.engine.connect() as conn:
        for name, row in (await conn.exec_driver_sql(_snapshot_sql(conn.dialect, skip))).all():
            texts[name].append(row)
    return {name: f"{len(rows)}:{hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()[:16]}"
            for name, rows in texts.items()}


_SNAPSHOT_TABLES = [t.name for t in Base.metadata.sorted_tables if t.name not in COUNTERS]
_NULL = "\u2400"  # stands for NULL in a row's text (a NULL would blank the whole row)
_SNAPSHOT_SQL: dict[tuple[str, frozenset[str]], str] = {}


def _snapshot_sql(dialect: Dialect, skip: frozenset[str]) -> str:
    """Every row of every table as ``(table, one text of its columns)``, UNION ALL; compiled
    once (working out a cache key for so large a statement costs more than running it)."""
    found = _SNAPSHOT_SQL.get((dialect.name, skip))
    if found is None:
        parts = []
        for table in Base.metadata.sorted_tables:
            if table.name in COUNTERS:
                continue
            row: ColumnElement[str] = literal("", String)
            for c in table.columns:
                if c.name not in VOLATILE_COLUMNS | skip:
                    row = row + func.coalesce(cast(c, Text), _NULL) + "\x1f"
            parts.append(select(literal(table.name, String), row).select_from(table))
        compiled = union_all(*parts).compile(dialect=dialect,
                                             compile_kwargs={"literal_binds": True})
        found = _SNAPSHOT_SQL[(dialect.name, skip)] = str(compiled)
    return found


# ---------------------------------------------------------------- one request, judged


@dataclass
class Tally:
    target: str
    cases: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)

    def fail(self, case: str, why: str, response: httpx.Response | None = None) -> None:
        text = f"{case}: {why}"
        if response is not None:
            text += f" [{response.status_code} {response.headers.get('content-type')}] "
            text += response.text[:300].replace("\n", " ")
        self.failures.append(text)

    def report(self) -> None:
        print(f"\ncorpus {self.target}: {self.cases} cases, {self.server_errors} server errors")
        assert not self.failures, "\n".join(self.failures[:60])


async def judge_api(
    w: World, tally: Tally, case: str, request: Callable[[], Any], *, must_refuse: bool = True
) -> httpx.Response:
    before = await snapshot(w.rt)
    response: httpx.Response = await request()
    tally.cases += 1
    status = response.status_code
    if status >= 500:
        tally.server_errors += 1
        tally.fail(case, "server error", response)
        return response
    if must_refuse and status < 400:
        tally.fail(case, "accepted", response)
    if status >= 400:
        ctype = response.headers.get("content-type", "")
        if not ctype.startswith("application/problem+json"):
            tally.fail(case, "not a problem body", response)
        else:
            body = response.json()
            if not (isinstance(body.get("code"), str) and body["code"] and body.get("detail")):
                tally.fail(case, "problem without code/detail", response)
        after = await snapshot(w.rt)
        changed = sorted(t for t in after if after[t] != before.get(t))
        if changed:
            tally.fail(case, f"refused but stored: {changed}", response)
    return response


async def judge_portal(
    w: World, tally: Tally, case: str, request: Callable[[], Any]
) -> httpx.Response:
    before = await snapshot(w.rt)
    response: httpx.Response = await request()
    tally.cases += 1
    status = response.status_code
    if status >= 500:
        tally.server_errors += 1
        tally.fail(case, "server error", response)
        return response
    ctype = response.headers.get("content-type", "")
    if not (300 <= status < 400 or ctype.startswith(("text/html", "image/", "application/pdf"))):
        tally.fail(case, "not an HTML page or a redirect", response)
    if status >= 400:
        after = await snapshot(w.rt)
        changed = sorted(t for t in after if after[t] != before.get(t))
        if changed:
            tally.fail(case, f"refused but stored: {changed}", response)
    return response


# ---------------------------------------------------------------- API bodies

GB = 1024**3


def baseline_body(w: World, schema: dict[str, Any]) -> dict[str, Any]:
    """A body the route would accept, so an attack on one field is the only thing wrong."""
    n = w.fresh()
    known: dict[str, dict[str, Any]] = {
        "RegisterIn": {"name": "Hostile Tester", "phone": w.fresh_phone(), "password": PASSWORD},
        "VerifyIn": {"login": w.phone, "code": "000000"},
        "ResendIn": {"login": w.phone, "channel": "sms"},
        "TokenIn": {"login": w.phone, "password": PASSWORD},
        "RefreshIn": {"refresh_token": "not-a-token"},
        "ResetIn": {"login": w.phone, "code": "000000", "new_password": "Another-river-2026"},
        "PlanIn": {"code": f"HOSTILE-{n}", "kind": "data", "name_zh": "测试", "name_en": "Test",
                   "price_minor": 1000, "validity_days": 30, "data_bytes": GB},
        "PlanPatch": {"name_en": f"Renamed {n}"},
        "RetireIn": {"reason": "hostile input test"},
        "BindIn": {"serial": "SN-0000", "secret": "0000"},
        "OrderIn": {"kind": "plan", "plan_code": "D7", "line_id": w.line_id},
        "RefundIn": {"reason": "hostile input test"},
        "GuestLookupIn": {"msisdn": w.msisdn},
        "PaymentIn": {"method": "card"},
        "PreferencesIn": {"marketing": True},
        "TemplateIn": {"channel": "sms", "body": f"{{operator}}: hostile {n}"},
        "AutoRenewIn": {"enabled": False, "funding": "wallet", "wallet_fallback": True},
        "UsageBatchIn": {"records": [usage_record(w, n)]},
    }
    title = schema.get("title", "")
    if title in known:
        return dict(known[title])
    return {name: _example(prop) for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", [])}


def usage_record(w: World, n: int) -> dict[str, Any]:
    """One usage record a peer may send for the world's line."""
    return {"record_id": f"hostile-{n}-{uuid.uuid4().hex[:8]}", "msisdn": w.msisdn,
            "type": "data", "units": 1024, "started_at": "2026-01-01T00:00:00+00:00"}


def _example(prop: dict[str, Any]) -> Any:
    s = resolve(prop)
    if "enum" in s:
        return s["enum"][0]
    t = s.get("type")
    if t == "integer":
        return max(int(s.get("minimum", 1)), 1)
    if t == "boolean":
        return False
    if t == "array":
        return []
    if t == "object":
        return {}
    if s.get("format") == "uuid":
        return str(uuid.uuid4())
    return "x" * max(int(s.get("minLength", 1)), 1)


def field_attacks(prop: dict[str, Any]) -> Iterator[tuple[str, Any, str | None]]:
    """(attack name, value to put in the field, raw JSON token replacing ``RAW``)."""
    kind = kind_of(prop)
    if kind in ("string", "enum"):
        for name, value in STRING_ATTACKS.items():
            yield name, value, None
    elif kind == "integer" or kind == "number":
        for name, token in INT_ATTACKS.items():
            yield name, RAW, token
    elif kind == "boolean":
        yield "string", "yes", None
        yield "number", 2, None
    elif kind == "array":
        items = resolve(prop).get("items", {})
        yield "huge_array", [_example(items)] * 10_000, None
        yield "not_an_array", "x", None
        for name, value, raw in field_attacks(items):
            yield f"item_{name}", [value], raw
    elif kind == "object":
        values = resolve(prop).get("additionalProperties", {})
        yield "key_lone_surrogate", {"\ud800": 1}, None
        yield "key_nul", {"a\x00b": 1}, None
        yield "key_over_long", {"k" * 10_000: 1}, None
        yield "not_an_object", "x", None
        if isinstance(values, dict) and values:
            for name, value, raw in field_attacks(values):
                yield f"value_{name}", {"sms": value}, raw


def body_attacks(schema: dict[str, Any]) -> Iterator[tuple[str, Any, str | None]]:
    """Attacks on the whole body: (name, replacement of the body or a key to add, raw)."""
    yield "deep_1000", RAW, _deep(1000)
    yield "top_level_huge_array", RAW, "[" + ",".join(["0"] * 10_000) + "]"
    yield "lone_surrogate_body", "\ud800", None
    yield "not_json", RAW, "{not json"


def _role_for(op: dict[str, Any], path: str) -> str | None:
    if not op.get("security"):
        return None
    return "admin" if "/admin/" in path or path.endswith("/refund") else "subscriber"


API_OPS = [(m, p) for m, p, _ in operations()]


def _fill_path(w: World, path: str, override: dict[str, str] | None = None) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if override and name in override:
            return override[name]
        return quote(w.path_value(name), safe="")

    return re.sub(r"\{(\w+)\}", sub, path)


async def _send(
    w: World, method: str, path: str, *, role: str | None, body: bytes | None = None,
    query: str = "", headers: dict[str, Any] | None = None,
) -> httpx.Response:
    h: dict[str, Any] = dict(w.tokens.get(role or "", {}))
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    url = path + (f"?{query}" if query else "")
    return await w.api.request(method, url, content=body, headers=h)


def _header_defaults(op: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: uuid.uuid4().hex for p in op.get("parameters", []) if p["in"] == "header"}


@pytest.mark.parametrize(("method", "path"), API_OPS, ids=[f"{m} {p}" for m, p in API_OPS])
async def test_api_operation_refuses_hostile_input(world: World, method: str, path: str) -> None:
    op = SPEC["paths"][path][method.lower()]
    role = _role_for(op, path)
    tally = Tally(f"{method} {path}")
    schema = body_schema(op)
    params = op.get("parameters", [])

    def body_for(value: Any = None, raw: str | None = None, key: str | None = None) -> bytes:
        base = baseline_body(world, schema) if schema is not None else {}
        if key is not None:
            base[key] = value
        return dump(base, raw)

    def go(body: bytes | None = None, query: str = "", path_over: dict[str, str] | None = None,
           headers: dict[str, Any] | None = None) -> Callable[[], Any]:
        url = _fill_path(world, path, path_over)
        hdrs = {**_header_defaults(op), **(headers or {})}
        if path == "/api/v1/usage" and "x-api-key" not in (headers or {}):
            hdrs["x-api-key"] = world.peer_key  # past the key, so the body is what is judged

        async def run() -> httpx.Response:
            return await _send(world, method, url, role=role, body=body, query=query,
                               headers=hdrs)

        return run

    default_body = body_for() if schema is not None else None
    # The baseline: a well-formed request is not a server error (and shows the route works).
    await judge_api(world, tally, "baseline", go(default_body), must_refuse=False)

    for p in params:
        where, name = p["in"], p["name"]
        pkind = kind_of(p["schema"])
        if where == "path":
            for attack, value in PATH_ATTACKS.items():
                await judge_api(world, tally, f"path {name}={attack}",
                                go(default_body, path_over={name: value}))
        elif where == "query":
            attacks = QUERY_INT_ATTACKS if pkind == "integer" else QUERY_STRING_ATTACKS
            for attack, value in attacks.items():
                await judge_api(world, tally, f"query {name}={attack}",
                                go(default_body, query=f"{name}={value}"))
        elif where == "header":
            for attack, raw_value in HEADER_ATTACKS.items():
                await judge_api(world, tally, f"header {name}={attack}",
                                go(default_body, headers={name: raw_value}))

    if schema is not None:
        for name, prop in schema.get("properties", {}).items():
            for attack, value, raw in field_attacks(prop):
                await judge_api(world, tally, f"body {name}={attack}",
                                go(body_for(value, raw, key=name)))
        for attack, value, raw in body_attacks(schema):
            await judge_api(world, tally, f"body={attack}", go(dump(value, raw)))
        first = next(iter(schema.get("properties", {})), "x")
        await judge_api(world, tally, f"body {first}=nested_40",
                        go(body_for(RAW, _deep(40), key=first)))
        for attack, key in (("unknown_key_lone_surrogate", "\ud800"),
                            ("unknown_key_over_long", "k" * 10_000),
                            ("unknown_key_nul", "a\x00b")):
            await judge_api(world, tally, f"body {attack}", go(body_for(1, None, key=key)))
    tally.report()


async def test_usage_record_fields_refuse_hostile_input(world: World) -> None:
    """Every field of a usage record (items of ``POST /api/v1/usage``'s array, which the
    generic corpus attacks only as a whole), each with the attacks for its type."""
    op = SPEC["paths"]["/api/v1/usage"]["post"]
    schema = body_schema(op)
    assert schema is not None
    item = resolve(schema["properties"]["records"]["items"])
    tally = Tally("POST /api/v1/usage records[]")
    headers = {"x-api-key": world.peer_key}

    def go(record: dict[str, Any], raw: str | None) -> Callable[[], Any]:
        body = dump({"records": [usage_record(world, world.fresh()), record]}, raw)

        async def run() -> httpx.Response:
            return await _send(world, "POST", "/api/v1/usage", role=None, body=body,
                               headers=headers)

        return run

    for name, prop in item.get("properties", {}).items():
        for attack, value, raw in field_attacks(prop):
            await judge_api(world, tally, f"records[1].{name}={attack}",
                            go(usage_record(world, world.fresh()) | {name: value}, raw))
    for attack, key in (("unknown_key_lone_surrogate", "\ud800"),
                        ("unknown_key_over_long", "k" * 10_000)):
        await judge_api(world, tally, f"records[1] {attack}",
                        go(usage_record(world, world.fresh()) | {key: 1}, None))
    tally.report()


# ---------------------------------------------------------------- webhooks


def _event(**data: Any) -> dict[str, Any]:
    base = {"reference": "ref", "attempt_id": str(uuid.uuid4()), "status": "succeeded",
            "amount_minor": 1500, "currency": "CNY", "method": "card", "failure_code": None}
    return {"id": f"evt_{uuid.uuid4().hex}", "type": "payment.succeeded", "created": 0,
            "data": {**base, **data}}


async def test_signed_webhooks_with_hostile_values(world: World) -> None:
    """A correctly signed event (the provider's secret is ours, but the body is hostile:
    a compromised or buggy provider) is refused with a 4xx, never a 500."""
    tally = Tally("POST /webhooks/sandbox (signed)")
    secret = world.rt.settings.sandbox_webhook_secret.get_secret_value()
    assert secret == SANDBOX_TEST_WEBHOOK_SECRET
    ref = world.reference
    cases: dict[str, tuple[dict[str, Any], str | None]] = {}
    for attack, token in INT_ATTACKS.items():
        cases[f"amount_minor={attack}"] = (_event(reference=ref, amount_minor=RAW), token)
    for attack, value in STRING_ATTACKS.items():
        cases[f"id={attack}"] = ({**_event(reference=ref), "id": value}, None)
        cases[f"reference={attack}"] = (_event(reference=value), None)
        cases[f"currency={attack}"] = (_event(reference=ref, currency=value), None)
        cases[f"status={attack}"] = (_event(reference=ref, status=value), None)
        cases[f"type={attack}"] = ({**_event(reference=ref), "type": value}, None)
    cases["id=121_chars"] = ({**_event(reference=ref), "id": "e" * 121}, None)
    cases["reference=121_chars"] = (_event(reference="r" * 121), None)
    cases["data=nested_40"] = ({**_event(reference=ref), "data": RAW}, _deep(40))
    cases["deep_1000"] = (RAW, _deep(1000))  # type: ignore[dict-item]
    for case, (event, raw) in cases.items():
        body = dump(event, raw)
        headers = {sandbox.SIGNATURE_HEADER: sandbox.sign(body, secret),
                   "Content-Type": "application/json"}

        async def run(body: bytes = body, headers: dict[str, str] = headers) -> httpx.Response:
            return await world.api.post("/webhooks/sandbox", content=body, headers=headers)

        await judge_api(world, tally, case, run)
    tally.report()


# ---------------------------------------------------------------- portal


@dataclass
class Form:
    action: str
    fields: dict[str, str]
    origin: str


class _Forms(HTMLParser):
    def __init__(self, origin: str) -> None:
        super().__init__()
        self.origin = origin
        self.forms: list[Form] = []
        self._current: Form | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self._current = Form(a.get("action") or self.origin, {}, self.origin)
            self.forms.append(self._current)
        elif self._current is None:
            return
        elif tag in ("input", "textarea") and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("radio", "checkbox") and "checked" not in a:
                self._current.fields.setdefault(a["name"], "")
                if kind == "radio" and not self._current.fields[a["name"]]:
                    self._current.fields[a["name"]] = a.get("value", "")
                return
            self._current.fields[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self._current.fields.setdefault(self._select, "")
        elif tag == "option" and self._select is not None and (
            not self._current.fields[self._select] or "selected" in a
        ):
            self._current.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None


def forms_on(page: str, origin: str) -> list[Form]:
    parser = _Forms(origin)
    parser.feed(page)
    return parser.forms


def portal_get_routes() -> list[str]:
    app = create_app(Settings(environment="development", database_url="sqlite+aiosqlite://",
                              secret_key="x" * 32))  # type: ignore[arg-type]
    paths: list[str] = []
    for route in app.routes:
        for ctx in getattr(route, "effective_candidates", lambda: [])():
            if not ctx.include_in_schema and "GET" in ctx.methods and ctx.path not in paths:
                paths.append(ctx.path)
    return paths


PORTAL_PAGES = portal_get_routes()
# Values a form would be filled with by a person (so an attack on one field is the only
# thing wrong); anything else keeps what the page put in the form.
FORM_GOOD = {
    "name": "Li Lei", "password": PASSWORD, "code": "000000", "serial": "SN-0000",
    "secret": "0000", "amount": "50", "card_number": "4242424242424242", "expiry": "12/30",
    "cvc": "123", "holder": "Li Lei",
    "threshold": "20", "max_per_month": "3",  # the auto top-up form
}
QUERY_NAMES = ("plan", "line", "login", "sent", "next", "page", "done", "lang", "kind",
               "msisdn", "amount", "attempt", "method")
FORM_ATTACKS = {k: v for k, v in STRING_ATTACKS.items() if isinstance(v, str)}


def _form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields, encoding="utf-8", errors="surrogatepass").encode()


def _page_path(w: World, template: str) -> str:
    values = {"line_id": w.line_id, "order_id": w.pending_order_id, "receipt_id": w.receipt_id,
              "reference": w.reference}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), template)


@pytest.mark.parametrize("portal_page", PORTAL_PAGES)
async def test_portal_page_and_its_forms_refuse_hostile_input(
    world: World, portal_page: str
) -> None:
    page = portal_page
    tally = Tally(f"portal {page}")
    url = _page_path(world, page)
    portal = world.portal

    async def get(target: str) -> Callable[[], Any]:
        async def run() -> httpx.Response:
            return await portal.get(target)

        return run

    first = await judge_portal(world, tally, "baseline", await get(url))
    for attack, value in PORTAL_QUERY_ATTACKS.items():
        query = "&".join(f"{n}={value}" for n in QUERY_NAMES)
        await judge_portal(world, tally, f"query={attack}", await get(f"{url}?{query}"))
    if page.count("{"):
        for attack, value in PATH_ATTACKS.items():
            bad = re.sub(r"\{\w+\}", value, page)
            await judge_portal(world, tally, f"path={attack}", await get(bad))
    if not first.headers.get("content-type", "").startswith("text/html"):
        tally.report()
        return

    forms = forms_on(first.text, url)
    # Forms that appear only once the first form is sent (the guest top-up's second step).
    for form in list(forms):
        if urlsplit(form.action).path == "/logout":
            continue
        r = await portal.post(form.action, content=_form_body(_filled(world, form)),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        if r.status_code < 400 and r.headers.get("content-type", "").startswith("text/html"):
            forms += [f for f in forms_on(r.text, form.action)
                      if (f.action, tuple(f.fields)) not in
                      {(g.action, tuple(g.fields)) for g in forms}]
    for form in forms:
        action = urlsplit(form.action).path
        if action == "/logout" and page != "/account":
            continue  # the layout's form, on every page: attacked once, from /account
        for name in form.fields:
            for attack, value in FORM_ATTACKS.items():
                filled = _filled(world, form) | {name: value}

                async def post(
                    f: Form = form, data: dict[str, str] = filled, field: str = name
                ) -> httpx.Response:
                    # a fresh CSRF token (an earlier attack may have rotated the session)
                    fresh = await portal.get(f.origin)
                    if field != "csrf" and 'name="csrf"' in fresh.text:
                        data = data | {"csrf": _csrf(fresh.text)}
                    return await portal.post(
                        f.action, content=_form_body(data),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})

                await judge_portal(world, tally, f"POST {action} {name}={attack}", post)
    tally.report()


def _filled(w: World, form: Form) -> dict[str, str]:
    out = dict(form.fields)
    for name in out:
        if name in FORM_GOOD and not out[name]:
            out[name] = FORM_GOOD[name]
        elif name in ("login", "phone") and not out[name]:
            out[name] = w.phone
        elif name == "msisdn" and not out[name]:
            out[name] = w.msisdn
    return out


def test_corpus_size() -> None:
    """The size of the API part of the corpus (portal cases depend on the pages rendered)."""
    total = 0
    for _method, _path, op in operations():
        total += 1
        for p in op.get("parameters", []):
            total += {"path": len(PATH_ATTACKS), "header": len(HEADER_ATTACKS)}.get(
                p["in"],
                len(QUERY_INT_ATTACKS if kind_of(p["schema"]) == "integer"
                    else QUERY_STRING_ATTACKS),
            )
        schema = body_schema(op)
        if schema is not None:
            total += sum(len(list(field_attacks(prop)))
                         for prop in schema.get("properties", {}).values())
            total += len(list(body_attacks(schema))) + 4
    print(f"\ncorpus api (static part): {total} cases over {len(API_OPS)} operations; "
          f"portal pages: {len(PORTAL_PAGES)}")
    assert total > 400


async def test_the_snapshot_sees_any_stored_change(world: World) -> None:
    """"Stored nothing" is only as good as the snapshot: a changed value, a value set
    where there was none, and a new row each show in their own table, and undoing the
    change gives the same snapshot again."""
    rt = world.rt
    before = await snapshot(rt)
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, uuid.UUID(world.line_id))
        assert line is not None and line.activated_at is None
        old_msisdn = line.msisdn
        line.msisdn = old_msisdn[:-1] + ("0" if old_msisdn[-1] != "0" else "1")
    changed = await snapshot(rt)
    assert sorted(t for t in changed if changed[t] != before[t]) == ["lines"]
    assert changed["lines"].split(":")[0] == before["lines"].split(":")[0]  # same count
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, uuid.UUID(world.line_id))
        assert line is not None
        line.msisdn, line.activated_at = old_msisdn, clock.now()
    was_null = await snapshot(rt)
    assert sorted(t for t in was_null if was_null[t] != before[t]) == ["lines"]
    async with unit_of_work(rt.sessions) as s:
        line = await s.get(Line, uuid.UUID(world.line_id))
        assert line is not None
        line.activated_at = None
        s.add(AuditEvent(action="test.snapshot", subject_type="test", subject_id="t"))
    grown = await snapshot(rt)
    assert sorted(t for t in grown if grown[t] != before[t]) == ["audit_events"]


# ---------------------------------------------------------------- the 500s reported in issue 6

REPORTED: list[tuple[str, str, str, dict[str, Any] | None, str | None]] = [
    # (name, method, path, JSON body, role)
    ("plan code with NUL", "GET", "/api/v1/plans/a%00b", None, None),
    ("register name with NUL", "POST", "/api/v1/auth/register",
     {"name": "Nu\u0000ll", "phone": "+8613900000001", "password": PASSWORD}, None),
    ("register name lone surrogate", "POST", "/api/v1/auth/register",
     {"name": "\ud800", "phone": "+8613900000002", "password": PASSWORD}, None),
    ("order plan_code with NUL", "POST", "/api/v1/orders",
     {"kind": "new_line", "plan_code": "a\u0000b"}, "subscriber"),
    ("refund reason with NUL", "POST", "/api/v1/orders/{paid}/refund",
     {"reason": "bad\u0000reason"}, "admin"),
    ("plan name with NUL", "POST", "/api/v1/admin/plans",
     {"code": "NUL1", "kind": "data", "name_zh": "a\u0000", "name_en": "b", "price_minor": 1,
      "data_bytes": 1}, "admin"),
    ("price_minor 2^63", "POST", "/api/v1/admin/plans",
     {"code": "BIG1", "kind": "data", "name_zh": "a", "name_en": "b", "price_minor": 2**63,
      "data_bytes": 1}, "admin"),
    ("data_bytes 2^63", "POST", "/api/v1/admin/plans",
     {"code": "BIG2", "kind": "data", "name_zh": "a", "name_en": "b", "price_minor": 1,
      "data_bytes": 2**63}, "admin"),
    ("Idempotency-Key of 10,000 characters", "POST", "/api/v1/orders",
     {"kind": "plan", "plan_code": "D7", "line_id": "{line}"}, "subscriber"),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "role"), REPORTED,
                         ids=[r[0] for r in REPORTED])
async def test_the_reported_server_errors_are_problems(
    world: World, name: str, method: str, path: str, body: dict[str, Any] | None,
    role: str | None,
) -> None:
    path = path.replace("{paid}", world.paid_order_id)
    if body and body.get("line_id") == "{line}":
        body["line_id"] = world.line_id
    headers = {**world.tokens.get(role or "", {}), "Idempotency-Key": uuid.uuid4().hex,
               "Content-Type": "application/json"}
    if name.startswith("Idempotency-Key"):
        headers["Idempotency-Key"] = "k" * 10_000
    before = await snapshot(world.rt)
    content = dump(body) if body is not None else None  # \ud800 stays an escape
    r = await world.api.request(method, path, content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation_failed"
    assert await snapshot(world.rt) == before


async def test_json_nested_1000_deep_is_a_400_json_too_deep(world: World) -> None:
    for path in ("/api/v1/auth/register", "/api/v1/admin/plans", "/webhooks/sandbox"):
        r = await world.api.post(path, content=_deep(1000), headers={
            **world.tokens["admin"], "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "json_too_deep"
        assert r.headers["content-type"].startswith("application/problem+json")
    # 32 levels are still read (and refused for what they are, not for their depth)
    r = await world.api.post("/api/v1/auth/token", content=_deep(32),
                             headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "validation_failed"


async def test_signed_webhook_amounts_1e400_and_infinity_are_refused(world: World) -> None:
    secret = world.rt.settings.sandbox_webhook_secret.get_secret_value()
    for token in ("1e400", "Infinity", str(2**63)):
        body = dump(_event(reference=world.reference, amount_minor=RAW), token)
        before = await snapshot(world.rt)
        r = await world.api.post("/webhooks/sandbox", content=body, headers={
            sandbox.SIGNATURE_HEADER: sandbox.sign(body, secret),
            "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert await snapshot(world.rt) == before


async def test_a_webhook_event_id_longer_than_its_column_is_refused(world: World) -> None:
    secret = world.rt.settings.sandbox_webhook_secret.get_secret_value()
    for event_id in ("e" * 121, "evt\u0000x"):
        body = dump({**_event(reference=world.reference), "id": event_id})
        r = await world.api.post("/webhooks/sandbox", content=body, headers={
            sandbox.SIGNATURE_HEADER: sandbox.sign(body, secret),
            "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, r.text


async def test_portal_buy_and_sandbox_pages_with_nul_are_pages(world: World) -> None:
    for path in ("/buy?plan=a%00b", "/sandbox/pay/%00", "/orders/a%00b"):
        r = await world.portal.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), path


# ---------------------------------------------------------------- the portal's forms


async def _register_post(w: World, name: str, language: str) -> httpx.Response:
    anon = httpx.AsyncClient(transport=w.api._transport, base_url="http://testserver")
    async with anon:
        page = await anon.get("/register", headers={"Accept-Language": language})
        return await anon.post(
            "/register",
            data={"csrf": _csrf(page.text), "name": name, "phone": "13900000009",
                  "email": "", "password": PASSWORD, "language": language,
                  "code_channel": "sms"},
            headers={"Accept-Language": language},
        )


@pytest.mark.parametrize(
    ("name", "zh", "en"),
    [
        ("x" * 101, "姓名太长：最多 100 个字符。", "Name is too long: at most 100 characters."),
        ("Nu\x00ll", "姓名含有无法使用的字符", "Name contains a character that cannot be used"),
        ("\u200b\u200b", "姓名为空或没有可见内容", "Name is empty or shows nothing"),
    ],
)
async def test_the_register_form_shows_a_refused_name_again_with_the_reason(
    world: World, name: str, zh: str, en: str
) -> None:
    for language, message in (("zh-CN", zh), ("en", en)):
        before = await snapshot(world.rt)
        r = await _register_post(world, name, language)
        assert r.status_code == 422, r.text[:500]
        assert r.headers["content-type"].startswith("text/html")
        assert 'data-test="register-form"' in r.text  # the form itself, not an error page
        assert message in html.unescape(r.text)
        assert 'value="13900000009"' in r.text  # what was typed is kept
        assert await snapshot(world.rt) == before


async def test_a_10000_character_chinese_name_is_a_readable_page(world: World) -> None:
    """90 KB of form: over the body cap, answered with a page in the reader's language."""
    for language, title in (("zh-CN", "表单内容过长"), ("en", "This form is too large")):
        r = await _register_post(world, "张" * 10_000, language)
        assert r.status_code == 413
        assert r.headers["content-type"].startswith("text/html")
        assert title in r.text
        assert "{" not in r.text.split("<body>")[1]  # no JSON


async def test_the_api_refuses_what_the_portal_refuses(world: World) -> None:
    """The same limits at both edges: a 101-character name is refused by both."""
    r = await world.api.post("/api/v1/auth/register", json={
        "name": "x" * 101, "phone": "+8613900000010", "password": PASSWORD})
    assert r.status_code == 422
    r2 = await _register_post(world, "x" * 101, "en")
    assert r2.status_code == 422
    r = await world.api.post("/api/v1/auth/register", json={
        "name": "x" * 100, "phone": "+8613900000011", "password": PASSWORD})
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("  Li Lei ", {}, "Li Lei"),
        ("Cafe\u0301", {}, "Café"),
        ("１３８ ０", {"form": "NFKC"}, "138 0"),
        ("a\r\nb\tc", {"multiline": True}, "a\nb\tc"),
        ("张三", {"max_length": 2}, "张三"),
        ("\U0001f600", {"min_length": 1}, "\U0001f600"),
        ("👨\u200d👩\u200d👧", {"min_length": 1}, "👨\u200d👩\u200d👧"),  # ZWJ sequence
    ],
)
def test_clean_text_keeps_and_normalises_real_text(
    value: str, kwargs: dict[str, Any], expected: str
) -> None:
    from openmvno.fields import clean_text

    assert clean_text(value, **{"max_length": 100, **kwargs}) == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "kind"),
    [
        ("a\x00b", {}, "text_control_character"),
        ("\ud800", {}, "text_surrogate"),
        ("a\nb", {}, "text_control_character"),
        ("\x1b[31m", {"multiline": True}, "text_control_character"),
        ("\u202eevil", {}, "text_control_character"),
        ("\ufffe", {}, "text_control_character"),
        ("x" * 101, {}, "string_too_long"),
        ("x" * 100_000, {}, "string_too_long"),
        ("\u200b\u3164 ", {"min_length": 1}, "text_blank"),
        ("", {"min_length": 1}, "string_too_short"),
        (7, {}, "text_type"),
    ],
)
def test_clean_text_refuses_what_cannot_be_stored_or_shown(
    value: Any, kwargs: dict[str, Any], kind: str
) -> None:
    from pydantic_core import PydanticCustomError

    from openmvno.fields import clean_text

    with pytest.raises(PydanticCustomError) as caught:
        clean_text(value, **{"max_length": 100, **kwargs})
    assert caught.value.type == kind


@pytest.mark.parametrize("raw", ["-1", str(2**63), "1e400", "Infinity", "NaN", '"5"', "1.5",
                                 "true", "1e3"])
def test_bounded_integers_take_json_integers_only(raw: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from openmvno.fields import BigCount, MinorAmount, Units

    for kind in (BigCount, MinorAmount, Units):
        with pytest.raises(ValidationError):
            TypeAdapter(kind).validate_json(raw)
    assert TypeAdapter(BigCount).validate_json(str(2**63 - 1)) == 2**63 - 1
    assert TypeAdapter(MinorAmount).validate_json("0") == 0


def test_json_depth_ignores_brackets_inside_strings() -> None:
    from openmvno.channels.json_limits import json_depth_exceeds

    assert not json_depth_exceeds(b'{"a": "' + b"[" * 100 + b'"}')
    assert not json_depth_exceeds(b'{"a": "\\"' + b"[" * 100 + b'"}')
    assert not json_depth_exceeds(_deep(32).encode())
    assert json_depth_exceeds(_deep(33).encode())
    assert not json_depth_exceeds(b"[" + b"[1]," * 10_000 + b"[1]]")
    assert json_depth_exceeds(b"[" * 5_000)  # unbalanced: counted exactly


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


def _without_text(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_text(v) for v in value]
    if isinstance(value, dict):
        return {str(i): _without_text(v) for i, v in enumerate(value.values())}
    return None


_TRICKY_TEXT = st.text(alphabet='[]{}"\\\n/ab\u4e2d', max_size=8)
_JSON_VALUES = st.recursive(
    st.none() | st.integers(-5, 5) | _TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(_TRICKY_TEXT, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=_JSON_VALUES, limit=st.integers(0, 6), ascii_only=st.booleans())
def test_json_depth_is_the_depth_of_what_the_body_holds(
    value: Any, limit: int, ascii_only: bool
) -> None:
    """Over any JSON (strings full of brackets, quotes and backslashes), the check says
    "too deep" exactly when the parsed value nests deeper than the limit."""
    from openmvno.channels.json_limits import _brackets_outside_strings, json_depth_exceeds

    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth_exceeds(body, limit) == (_depth(value) > limit)
    # The same value with every string emptied has just its own brackets left.
    bare = json.dumps(_without_text(value)).encode().translate(None, b'":, -0123456789nul')
    assert _brackets_outside_strings(body) == bare


async def test_a_validation_problem_never_echoes_huge_or_invalid_input(world: World) -> None:
    body = b'{"login": "a", "password": "b", "' + b"k" * 10_000 + b'": 1, "\\ud800": 2}'
    r = await world.api.post("/api/v1/auth/token", content=body,
                             headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert len(r.content) < 2_000
    r.content.decode("utf-8")  # valid UTF-8
    items = ",".join(f'{{"x{i}": 1}}' for i in range(5_000))
    r = await world.api.post(
        "/api/v1/admin/plans", headers={**world.tokens["admin"],
                                        "Content-Type": "application/json"},
        content=('{"roaming_zones": [' + items + "]}").encode(),
    )
    assert r.status_code == 422
    assert len(r.json()["errors"]) <= 20


# ---------------------------------------------------------------- SMS inbound and USSD


async def test_signed_sms_inbound_with_hostile_values(world: World) -> None:
    """A correctly signed MO message whose fields are hostile: a 4xx problem (nothing
    stored) or, for text a subscriber could really send, a normal reply; never a 5xx."""
    import json as _json

    from pydantic import SecretStr

    from openmvno import clock
    from openmvno.channels.sms.inbound import sign

    secret = "hostile-sms-gateway-secret-0123456789"
    world.rt.settings = world.rt.settings.model_copy(
        update={"sms_inbound_secret": SecretStr(secret)})
    tally = Tally("POST /sms/inbound (signed)")
    base = {"id": "gw", "from": world.msisdn, "to": "10086", "text": "BAL"}
    cases: dict[str, tuple[bytes, bool]] = {}
    for attack, value in STRING_ATTACKS.items():
        for name in ("id", "from", "to", "text"):
            body = {**base, "id": f"gw-{name}-{attack}", name: value}
            accepted_ok = name == "text" and attack in ("bidi_override",)
            cases[f"{name}={attack}"] = (_json.dumps(body).encode(), accepted_ok)
    cases["extra_field"] = (_json.dumps({**base, "x": 1}).encode(), False)
    cases["array"] = (b"[1,2]", False)
    cases["deep_1000"] = (_deep(1000).encode(), False)
    cases["not_json"] = (b"\xff\xfe", False)
    for case, (raw, accepted_ok) in cases.items():
        stamp = str(int(clock.now().timestamp()))
        headers = {"X-Timestamp": stamp, "X-Signature": sign(secret, stamp, raw),
                   "Content-Type": "application/json"}

        async def run(raw: bytes = raw, headers: dict[str, str] = headers) -> httpx.Response:
            return await world.api.post("/sms/inbound", content=raw, headers=headers)

        await judge_api(world, tally, case, run, must_refuse=not accepted_ok)
    tally.report()


async def test_ussd_callback_with_hostile_form_values(world: World) -> None:
    """Every form field of the USSD callback with hostile values: a plain-text answer
    (``CON``/``END``), never a 5xx, and a refused request stores nothing."""
    from pydantic import SecretStr

    world.rt.settings = world.rt.settings.model_copy(
        update={"ussd_secret": SecretStr("hostile-ussd-secret-0123456789")})
    tally = Tally("POST /ussd")
    base = {"sessionId": "s-1", "serviceCode": "*123#", "phoneNumber": world.msisdn,
            "text": "1"}
    forms = {f"{name}={attack}": {**base, name: value}
             for attack, value in FORM_ATTACKS.items() for name in base}
    forms["text=deep_menu"] = {**base, "text": "*".join(["2"] * 150)}
    forms["text=stars"] = {**base, "text": "*" * 300}
    for case, data in forms.items():
        before = await snapshot(world.rt)
        r = await world.api.post("/ussd", content=_form_body(data), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-USSD-Secret": "hostile-ussd-secret-0123456789"})
        tally.cases += 1
        if r.status_code >= 500:
            tally.server_errors += 1
            tally.fail(case, "server error", r)
            continue
        # (a body over the app's size cap is the 413 of the middleware, before the route)
        if r.status_code != 413 and (not r.text.startswith(("CON ", "END "))
                                     or len(r.text) > 182):
            tally.fail(case, "not a USSD screen", r)
        if r.status_code >= 400:
            after = await snapshot(world.rt)
            changed = sorted(t for t in after if after[t] != before.get(t))
            if changed:
                tally.fail(case, f"refused but stored: {changed}", r)
    tally.report()
