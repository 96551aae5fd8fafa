"""Provisioning: tell the network (HLR/HSS, SM-DP+) what a paid order changed.

The port is one call per order; it must be safe to repeat (the outbox retries it),
so adapters key their work on ``order_id``. The sandbox adapter succeeds, or fails
on purpose when ``provisioning_sandbox_fail`` is set (tests, demos).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from openmvno.config import Settings


class ProvisioningFailed(Exception):
    """The network refused or did not answer; the job is retried with backoff."""


@dataclass(frozen=True)
class ProvisioningRequest:
    order_id: uuid.UUID
    kind: str
    line_id: uuid.UUID | None
    iccid: str | None
    msisdn: str | None
    plan_code: str | None


@dataclass(frozen=True)
class BarringRequest:
    """Bar or lift a line's data service (usage charging: a line that ran out). Keyed on
    ``(line_id, generation)``: repeating one is safe."""

    line_id: uuid.UUID
    iccid: str
    msisdn: str
    action: str
    """``bar_data`` or ``unbar_data``."""
    generation: int


class Provisioner(Protocol):
    name: str

    async def provision(self, request: ProvisioningRequest) -> str:
        """Apply the order on the network; returns the network's reference."""
        ...

    async def set_barring(self, request: BarringRequest) -> str:
        """Bar or lift the line's data service; returns the network's reference."""
        ...


class SandboxProvisioner:
    """Accepts everything at once (or nothing, with ``fail=True``)."""

    name = "sandbox"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail

    async def set_line_state(self, request: LineStateRequest) -> str:
        if self.fail:
            raise ProvisioningFailed(f"sandbox refused {request.action} on {request.line_id}")
        return f"sbx-{request.action}-{request.line_id.hex[:12]}"

    async def provision(self, request: ProvisioningRequest) -> str:
        if self.fail:
            raise ProvisioningFailed(f"sandbox refused order {request.order_id}")
        return f"sbx-prov-{request.order_id.hex[:16]}"

    async def set_barring(self, request: BarringRequest) -> str:
        if self.fail:
            raise ProvisioningFailed(f"sandbox refused {request.action} on {request.line_id}")
        return f"sbx-{request.action}-{request.line_id.hex[:12]}-{request.generation}"


@dataclass(frozen=True)
class LineStateRequest:
    """Change what the network lets a line do (the line lifecycle): ``minimal`` (grace with
    minimal service: incoming calls and SMS, emergency calls), ``suspend`` (停机: nothing
    but emergency calls), ``restore`` (复机: full service again) or ``terminate`` (the
    subscription and profile are removed). Keyed on ``key``: repeating one is safe."""

    line_id: uuid.UUID
    iccid: str
    msisdn: str
    action: str
    key: str


async def set_line_state(adapter: Provisioner, request: LineStateRequest) -> str:
    """Ask ``adapter`` to apply ``request`` (adapters without lifecycle support refuse)."""
    method = getattr(adapter, "set_line_state", None)
    if method is None:
        raise ProvisioningFailed(f"{adapter.name} cannot {request.action} lines")
    return str(await method(request))


def provisioner(settings: Settings) -> Provisioner:
    """The configured provisioning adapter."""
    return SandboxProvisioner(fail=settings.provisioning_sandbox_fail)
