"""SMPP 3.4 link to the operator's SMSC: one transceiver bind over asyncio.

The PDUs are built and parsed by ``smpplib`` (PyPI); this module is the transport around
them: connect and ``bind_transceiver`` with system_id/password, ``enquire_link`` when the
link is idle (no answer drops it), reconnect with doubling backoff, a window of submits
awaiting their response and a throughput cap, ``unbind`` on stop. Inbound ``deliver_sm``
are either delivery receipts (``esm_class`` 0x04) or mobile-originated messages; both are
handed to callbacks and answered with ``deliver_sm_resp`` only once the callback returns
(a crash before means the SMSC delivers them again).

Text is encoded here: GSM 03.38 7-bit (unpacked, ``data_coding`` 0) when every character
has a GSM code, else UCS-2 (``data_coding`` 8, UTF-16BE); a text longer than one SMS is
cut into parts with a concatenation UDH (``05 00 03 ref total seq``), never inside a GSM
escape or a surrogate pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from smpplib import consts as smpp_consts
from smpplib import gsm as smpp_gsm
from smpplib import smpp as smpp_pdu

log = logging.getLogger("openmvno.smpp")

DCS_GSM = 0x00
DCS_LATIN1 = 0x03
DCS_UCS2 = 0x08
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04
GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
"""Characters (GSM septets / UTF-16 code units) in one SMS and in one part of a long one."""

ROK = 0x00000000
THROTTLED = 0x00000058
QUEUE_FULL = 0x00000014
SYSTEM_ERROR = 0x00000008
TEMPORARY = frozenset({THROTTLED, QUEUE_FULL, SYSTEM_ERROR})
"""Refusals that say "not now": the part was not accepted and is sent again later."""
APP_TEMPORARY = 0x00000064  # ESME_RX_T_APPN: we could not take a deliver_sm now; resend it


# ------------------------------------------------------------------ encoding


def _gsm_septets(ch: str) -> int | None:
    """Septets of one character in GSM 03.38 (2 for the escape table), None if absent."""
    try:
        return len(smpp_gsm.gsm_encode(ch))
    except UnicodeError:
        return None


def gsm_fits(text: str) -> bool:
    return all(_gsm_septets(ch) is not None for ch in text)


def gsm_decode(data: bytes) -> str:
    table = smpp_gsm.GSM_CHARACTER_TABLE
    out: list[str] = []
    escape = False
    for b in data:
        if escape:
            out.append(table[b + 0x80] if b + 0x80 < len(table) else "?")
            escape = False
        elif b == 0x1B:
            escape = True
        elif b < len(table):
            out.append(table[b])
    return "".join(out)


@dataclass(frozen=True)
class Encoded:
    data_coding: int
    esm_class: int
    parts: list[bytes]
    """Each part's ``short_message`` (with its UDH when there are several)."""


def _cut(units: list[tuple[str, int]], size: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for ch, n in units:
        if used + n > size:
            chunks.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += n
    if current:
        chunks.append("".join(current))
    return chunks


def encode_text(text: str, ref: int) -> Encoded:
    """``text`` as one or more SMS; ``ref`` (0-255) ties the parts of a long one together
    (the same on a resend, so a phone joins old and new parts)."""
    if gsm_fits(text):
        units = [(ch, _gsm_septets(ch) or 1) for ch in text]
        single, part_size, dcs = GSM_SINGLE, GSM_PART, DCS_GSM

        def encode(chunk: str) -> bytes:
            return bytes(smpp_gsm.gsm_encode(chunk))
    else:
        units = [(ch, 2 if ord(ch) > 0xFFFF else 1) for ch in text]
        single, part_size, dcs = UCS2_SINGLE, UCS2_PART, DCS_UCS2

        def encode(chunk: str) -> bytes:
            return chunk.encode("utf-16-be")
    if sum(n for _, n in units) <= single:
        return Encoded(dcs, 0, [encode(text)])
    chunks = _cut(units, part_size)
    if len(chunks) > 255:
        raise ValueError("text too long for one concatenated SMS")
    total = len(chunks)
    return Encoded(dcs, ESM_UDHI, [
        bytes([0x05, 0x00, 0x03, ref & 0xFF, total, seq]) + encode(chunk)
        for seq, chunk in enumerate(chunks, start=1)
    ])


def decode_short_message(data: bytes, data_coding: int, esm_class: int) -> str:
    """The text of an inbound ``deliver_sm`` (its UDH, if any, dropped)."""
    if esm_class & ESM_UDHI and data:
        data = data[data[0] + 1:]
    coding = data_coding & 0x0F
    if coding == DCS_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if coding == DCS_LATIN1:
        return data.decode("latin-1")
    if coding == 0x01:  # IA5 / ASCII
        return data.decode("ascii", errors="replace")
    return gsm_decode(data)


# ------------------------------------------------------------------ receipts

_RECEIPT_FIELD = re.compile(r"(id|stat|err|sub|dlvrd):\s*(\S+)", re.IGNORECASE)
RECEIPT_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
FINAL_OK = frozenset({"DELIVRD"})
FINAL_FAILED = frozenset({"EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN"})


@dataclass(frozen=True)
class Receipt:
    message_id: str
    stat: str
    """``DELIVRD``, ``UNDELIV``, ``EXPIRED``, ... (from ``message_state`` or the text)."""
    error: str
    recipient: str
    """The phone the message was for (the receipt's ``source_addr``)."""
    user_reference: int | None

    @property
    def final(self) -> bool:
        return self.stat in FINAL_OK or self.stat in FINAL_FAILED

    @property
    def delivered(self) -> bool:
        return self.stat in FINAL_OK


def parse_receipt(pdu: Any) -> Receipt:
    text = _text(getattr(pdu, "short_message", b"") or b"")
    found = {k.lower(): v for k, v in _RECEIPT_FIELD.findall(text)}
    message_id = _text(getattr(pdu, "receipted_message_id", None) or b"") or found.get("id", "")
    state = getattr(pdu, "message_state", None)
    stat = RECEIPT_STATES.get(state, "") if isinstance(state, int) else ""
    stat = stat or found.get("stat", "UNKNOWN").upper()
    reference = getattr(pdu, "user_message_reference", None)
    return Receipt(
        message_id=message_id.strip("\x00"), stat=stat, error=found.get("err", ""),
        recipient=_text(getattr(pdu, "source_addr", b"") or b""),
        user_reference=reference if isinstance(reference, int) else None,
    )


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return value.rstrip("\x00")


# ------------------------------------------------------------------ the link


class LinkDown(ConnectionError):
    """The bind is gone (or never came up) before the submit was answered: the submit is
    in doubt — it may or may not have reached the SMSC."""


@dataclass(frozen=True)
class SubmitAnswer:
    status: int
    message_id: str

    @property
    def accepted(self) -> bool:
        return self.status == ROK

    @property
    def temporary(self) -> bool:
        return self.status in TEMPORARY

    @property
    def description(self) -> str:
        text = smpp_consts.DESCRIPTIONS.get(self.status, "unknown status")
        return f"0x{self.status:08x} {text}"


@dataclass(frozen=True)
class Inbound:
    """A mobile-originated message."""

    sender: str
    recipient: str
    text: str


@dataclass
class LinkConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    source_addr: str = ""
    window: int = 10
    max_per_second: float = 50.0
    enquire_link_seconds: float = 30.0
    response_timeout_seconds: float = 10.0
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    throttle_pause_seconds: float = 1.0
    name: str = "smpp"


OnReceipt = Callable[[Receipt], Awaitable[None]]
OnInbound = Callable[[Inbound], Awaitable[None]]


@dataclass
class _Sequence:
    """What smpplib's PDU classes ask their ``client`` for."""

    sequence: int = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence + 1 if self.sequence < 0x7FFFFFFF else 1
        return self.sequence


@dataclass
class LinkStats:
    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    throttled: int = 0
    enquire_links: int = 0
    receipts: int = 0
    inbound: int = 0


class SmppLink:
    """One ESME bind, kept up until :meth:`run`'s ``stop`` is set."""

    def __init__(self, config: LinkConfig, *, on_receipt: OnReceipt, on_inbound: OnInbound
                 ) -> None:
        self.config = config
        self.on_receipt = on_receipt
        self.on_inbound = on_inbound
        self.stats = LinkStats()
        self.bound = asyncio.Event()
        self._seq = _Sequence()
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._window = asyncio.Semaphore(max(1, config.window))
        self._next_send = 0.0
        self._rate_lock = asyncio.Lock()
        self._paused_until = 0.0
        self._last_traffic = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tags: dict[int, Any] = {}
        self.answered: dict[str, Any] = {}
        """Message id → the tag of the submit it answered, recorded the moment the answer is
        read (a receipt read right after it must find it, before the submitter resumes)."""

    # -------------------------------------------------------------- public

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, bind, serve; on any loss wait (doubling backoff) and bind again."""
        delay = self.config.reconnect_min_seconds
        while not stop.is_set():
            binds = self.stats.binds
            try:
                await self._session(stop)
            except (OSError, asyncio.IncompleteReadError, LinkDown, BindRefused) as exc:
                if self.stats.binds == binds:  # refused, or gone before the bind answer
                    self.stats.bind_failures += 1
                log.warning("smpp link down", extra={"link": self.config.name, "error": str(exc)})
            finally:
                self._down()
                if self.stats.binds > binds:  # it was up: start the backoff afresh
                    delay = self.config.reconnect_min_seconds
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, self.config.reconnect_max_seconds)

    async def submit(self, *, to: str, short_message: bytes, data_coding: int, esm_class: int,
                     user_reference: int | None = None, tag: Any = None) -> SubmitAnswer:
        """Send one ``submit_sm`` (registered delivery on) and wait for its answer; raises
        :class:`LinkDown` if the link is not bound or goes before the answer."""
        async with self._window:
            await self._pace()
            writer = self._writer
            if writer is None or not self.bound.is_set():
                raise LinkDown("not bound")
            pdu = smpp_pdu.make_pdu(
                "submit_sm", client=self._seq,
                service_type="",
                source_addr_ton=0x00,
                source_addr_npi=0x00,
                source_addr=self.config.source_addr,
                dest_addr_ton=smpp_consts.SMPP_TON_INTL,
                dest_addr_npi=smpp_consts.SMPP_NPI_ISDN,
                destination_addr=to.lstrip("+"),
                esm_class=esm_class,
                data_coding=data_coding,
                registered_delivery=0x01,
                short_message=short_message,
                user_message_reference=user_reference,
            )
            if tag is not None:
                self._tags[int(pdu.sequence)] = tag
            try:
                resp = await self._request(pdu)
            finally:
                self._tags.pop(int(pdu.sequence), None)
            self.stats.submits += 1
            status = int(resp.status)
            if status in TEMPORARY:
                self.stats.throttled += 1
                self._paused_until = time.monotonic() + self.config.throttle_pause_seconds
            return SubmitAnswer(status, _text(getattr(resp, "message_id", b"") or b""))

    # -------------------------------------------------------------- session

    async def _session(self, stop: asyncio.Event) -> None:
        cfg = self.config
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port), timeout=cfg.response_timeout_seconds
        )
        self._writer = writer
        self._last_traffic = time.monotonic()
        read_task = asyncio.create_task(self._read_loop(reader))
        try:
            bind = smpp_pdu.make_pdu(
                "bind_transceiver", client=self._seq, system_id=cfg.system_id,
                password=cfg.password, system_type=cfg.system_type, interface_version=0x34,
                addr_ton=0, addr_npi=0, address_range="",
            )
            resp = await self._request(bind, allow_unbound=True)
            if resp.status != ROK:
                raise BindRefused(f"bind refused: 0x{int(resp.status):08x}")
            self.stats.binds += 1
            self.bound.set()
            log.info("smpp bound", extra={"link": cfg.name, "host": cfg.host, "port": cfg.port})
            stopper = asyncio.create_task(stop.wait())
            try:
                while True:
                    idle = time.monotonic() - self._last_traffic
                    wait = max(0.05, cfg.enquire_link_seconds - idle)
                    done, _ = await asyncio.wait({stopper, read_task}, timeout=wait,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if read_task in done:
                        read_task.result()  # raises why the link went
                        raise LinkDown("the SMSC closed the connection")
                    if stopper in done:
                        await self._unbind()
                        return
                    if time.monotonic() - self._last_traffic >= cfg.enquire_link_seconds:
                        self.stats.enquire_links += 1
                        await self._request(smpp_pdu.make_pdu("enquire_link", client=self._seq))
            finally:
                stopper.cancel()
        finally:
            read_task.cancel()
            with contextlib.suppress(BaseException):
                await read_task
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _unbind(self) -> None:
        """Graceful stop: wait (bounded) for submits in flight, then unbind."""
        self._stopping = True
        self.bound.clear()
        waiting = [f for f in self._pending.values() if not f.done()]
        if waiting:  # answers still due for submits in flight: let them land (bounded)
            await asyncio.wait(waiting, timeout=self.config.response_timeout_seconds)
        with contextlib.suppress(LinkDown, TimeoutError, OSError):
            await self._request(smpp_pdu.make_pdu("unbind", client=self._seq),
                                allow_unbound=True)
        log.info("smpp unbound", extra={"link": self.config.name})

    def _answer_tag(self, message_id: str, tag: Any) -> None:
        if not message_id:
            return
        self.answered[message_id] = tag
        while len(self.answered) > 10_000:
            self.answered.pop(next(iter(self.answered)))

    def _down(self) -> None:
        self.bound.clear()
        self._writer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkDown("the link went before the answer"))
        self._pending.clear()

    async def _pace(self) -> None:
        """At most ``max_per_second`` submits, and none during a throttle pause."""
        async with self._rate_lock:
            now = time.monotonic()
            start = max(now, self._next_send, self._paused_until)
            if start > now:
                await asyncio.sleep(start - now)
            interval = 1.0 / self.config.max_per_second if self.config.max_per_second > 0 else 0
            self._next_send = max(time.monotonic(), start) + interval

    async def _request(self, pdu: Any, *, allow_unbound: bool = False) -> Any:
        writer = self._writer
        if writer is None or (not allow_unbound and not self.bound.is_set()):
            raise LinkDown("not bound")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[int(pdu.sequence)] = future
        try:
            writer.write(pdu.generate())
            await writer.drain()
            self._last_traffic = time.monotonic()
            return await asyncio.wait_for(
                asyncio.shield(future), timeout=self.config.response_timeout_seconds
            )
        except TimeoutError as exc:
            # No answer in time: the link is not trusted any more (the SMSC may be stuck).
            writer.close()
            raise LinkDown("no answer in time") from exc
        except LinkDown:
            raise
        except OSError as exc:
            # The connection went while this request was written (``drain`` raises what
            # the reader met, e.g. a reset): in doubt like any request the link lost.
            raise LinkDown(f"the connection went: {exc}") from exc
        finally:
            self._pending.pop(int(pdu.sequence), None)

    def _respond(self, request: Any, command: str, status: int = ROK, **fields: Any) -> None:
        writer = self._writer
        if writer is None:
            return
        resp = smpp_pdu.make_pdu(command, client=self._seq, **fields)
        # smpplib keeps a response's own defaults over these keywords: set them after.
        resp.sequence = int(request.sequence)
        resp.status = status
        writer.write(resp.generate())

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            header = await reader.readexactly(4)
            (length,) = struct.unpack(">L", header)
            if length < 16 or length > 64 * 1024:
                raise LinkDown(f"bad PDU length {length}")
            data = header + await reader.readexactly(length - 4)
            self._last_traffic = time.monotonic()
            pdu = smpp_pdu.parse_pdu(data, client=self._seq, allow_unknown_opt_params=True)
            if pdu is None:
                continue
            command = str(pdu.command)
            if pdu.is_response():
                tag = self._tags.get(int(pdu.sequence))
                if tag is not None and command == "submit_sm_resp" and pdu.status == ROK:
                    self._answer_tag(_text(getattr(pdu, "message_id", b"") or b""), tag)
                future = self._pending.get(int(pdu.sequence))
                if future is not None and not future.done():
                    future.set_result(pdu)
                continue
            if command == "enquire_link":
                self._respond(pdu, "enquire_link_resp")
            elif command == "unbind":
                self._respond(pdu, "unbind_resp")
                raise LinkDown("the SMSC unbound")
            elif command == "deliver_sm":
                task = asyncio.create_task(self._deliver(pdu))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._respond(pdu, "generic_nack", status=0x00000003)

    async def _deliver(self, pdu: Any) -> None:
        esm = int(pdu.esm_class or 0)
        try:
            if esm & 0x3C == ESM_RECEIPT:
                self.stats.receipts += 1
                await self.on_receipt(parse_receipt(pdu))
            else:
                self.stats.inbound += 1
                data = pdu.short_message or b""
                if isinstance(data, str):
                    data = data.encode("latin-1")
                await self.on_inbound(Inbound(
                    sender=_plus(_text(pdu.source_addr or b"")),
                    recipient=_text(pdu.destination_addr or b""),
                    text=decode_short_message(data, int(pdu.data_coding or 0), esm),
                ))
        except Exception:
            log.exception("inbound deliver_sm failed; the SMSC will deliver it again")
            self._respond(pdu, "deliver_sm_resp", status=APP_TEMPORARY, message_id="")
            return
        self._respond(pdu, "deliver_sm_resp", message_id="")


def _plus(number: str) -> str:
    """Inbound addresses come without ``+`` (international TON): store them as E.164."""
    return number if number.startswith("+") or not number.isdigit() else f"+{number}"


class BindRefused(ConnectionError):
    """The SMSC refused the bind (wrong system_id/password, too many binds)."""
