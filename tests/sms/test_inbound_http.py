"""POST /sms/inbound: signed MO messages from HTTP gateways, into the same commands."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from openmvno import clock
from openmvno.channels.sms.inbound import sign
from openmvno.runtime import Runtime
from tests.conftest import FrozenClock
from tests.sms.helpers import person, replies_to

SECRET = "sms-gateway-shared-secret-0123456789"


@pytest.fixture
def signed_rt(rt: Runtime) -> Runtime:
    rt.settings = rt.settings.model_copy(update={"sms_inbound_secret": SecretStr(SECRET)})
    return rt


def _post(body: dict[str, str], *, ts: int | None = None, secret: str = SECRET
          ) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    stamp = str(ts if ts is not None else int(clock.now().timestamp()))
    return raw, {"X-Timestamp": stamp, "X-Signature": sign(secret, stamp, raw),
                 "Content-Type": "application/json"}


async def test_a_signed_bal_is_answered_through_the_outbox(
    signed_rt: Runtime, client: httpx.AsyncClient
) -> None:
    p = await person(client, signed_rt)
    raw, headers = _post({"id": "gw-1", "from": p.msisdn, "to": "10086", "text": "bal"})
    r = await client.post("/sms/inbound", content=raw, headers=headers)
    assert r.status_code == 200 and r.json() == {"status": "accepted"}
    assert "¥150.00" in (await replies_to(signed_rt, p.msisdn))[-1]
    # The same signed request again (inside the window) runs nothing twice.
    again = await client.post("/sms/inbound", content=raw, headers=headers)
    assert again.status_code == 200 and again.json() == {"status": "ignored"}
    assert len(await replies_to(signed_rt, p.msisdn)) == 1  # one reply


@pytest.mark.parametrize("case", ["unsigned", "wrong secret", "tampered", "stale", "future",
                                  "junk timestamp"])
async def test_unsigned_badly_signed_or_stale_requests_are_refused(
    signed_rt: Runtime, client: httpx.AsyncClient, case: str, frozen: FrozenClock
) -> None:
    now = int(clock.now().timestamp())
    body = {"id": "gw-2", "from": "+8613800000000", "to": "10086", "text": "BAL"}
    raw, headers = _post(body)
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "wrong secret":
        raw, headers = _post(body, secret="another-secret")
    elif case == "tampered":
        raw = raw.replace(b"BAL", b"BUY")
    elif case == "stale":
        raw, headers = _post(body, ts=now - 301)
    elif case == "future":
        raw, headers = _post(body, ts=now + 301)
    else:
        headers["X-Timestamp"] = "12e3"
    r = await client.post("/sms/inbound", content=raw, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await replies_to(signed_rt, "+8613800000000") == []


async def test_no_secret_configured_refuses_everything(rt: Runtime, client: httpx.AsyncClient
                                                       ) -> None:
    raw, headers = _post({"id": "x", "from": "+8613800000000", "text": "BAL"}, secret="")
    assert (await client.post("/sms/inbound", content=raw, headers=headers)).status_code == 401


async def test_a_signed_but_bad_body_is_a_422(signed_rt: Runtime, client: httpx.AsyncClient
                                              ) -> None:
    for body in ({"id": "x"}, {"id": "x", "from": "+86138", "text": "a\x00b"}, [1, 2]):
        raw = json.dumps(body).encode()
        stamp = str(int(clock.now().timestamp()))
        r = await client.post("/sms/inbound", content=raw, headers={
            "X-Timestamp": stamp, "X-Signature": sign(SECRET, stamp, raw)})
        assert r.status_code == 422, r.text
