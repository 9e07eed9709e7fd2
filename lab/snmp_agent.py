"""The lab's SNMP v2c responder: one UDP socket answering for every 127.x.y.z of the inventory.

It binds ``0.0.0.0:<port>``, learns which loopback address each request was sent to from
``IP_PKTINFO`` and answers *from* that address, so every site looks like its own device. Values
come from :mod:`lab.behaviour`: sysUpTime, traffic counters, ifOperStatus, speeds, reboots,
down/flapping sites (silence), slow sites (a delayed answer). A request with an unknown
destination, a community other than the site's, or a version other than v2c gets silence, as a
real agent gives. Several processes can share the port (``SO_REUSEPORT``) to go past one core.

Each site's MIB view (``sysDescr``, ``sysUpTime``, ``sysName``, ``ifNumber``, the ifTable
columns ifIndex/ifDescr/ifSpeed/ifOperStatus/ifInOctets/ifOutOctets and, for 64-bit agents, the
ifXTable columns ifName/ifHCInOctets/ifHCOutOctets/ifHighSpeed) holds three interfaces:
``lo`` (ifIndex 1), the WAN interface (the inventory's ``wan_if_index``, or an index 2-9 drawn
from the site key when the inventory gives ``wan_if_name``; named ``wan_if_name`` or ``wan0``)
and ``lan0`` (the WAN index + 1). 32-bit agents have no ifXTable, so ifName walks end at once
and ifDescr (equal to the name) is what identifies interfaces. GET, GETNEXT and GETBULK are
answered; SET gets ``noAccess``.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import multiprocessing
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Final

from core.collector import freeze_long_lived
from core.settings import LAB_SNMP_PORT
from lab.behaviour import SiteBehaviour
from lab.inventory import LabInventory
from lab.native.snmp_fast import BATCH, SnmpFastPath, SnmpPump
from probes import ber
from probes.snmp_oids import (
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OPER_STATUS,
    IF_OUT_OCTETS,
    IF_SPEED,
    SYS_UPTIME,
)

SYS_DESCR: Final = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_NAME: Final = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_NUMBER: Final = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_INDEX: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
IF_TABLE: Final = (1, 3, 6, 1, 2, 1, 2, 2)
IF_X_TABLE: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1)
SYSTEM: Final = (1, 3, 6, 1, 2, 1, 1)
MAX_BULK_REPETITIONS: Final = 64
MAX_VARBINDS: Final = 128
MAX_PLANS: Final = 256
_IP_PKTINFO: Final = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO: Final = struct.Struct("=I4s4s")  # struct in_pktinfo
_ANC_SIZE: Final = socket.CMSG_SPACE(_PKTINFO.size)
_READS_PER_WAKE: Final = 256
_VERSION_TLV: Final = b"\x02\x01\x01"
_NO_ACCESS: Final = 6
_TOO_BIG: Final = 1

# What a MIB entry computes.
(
    _SYS_DESCR,
    _SYS_UPTIME,
    _SYS_NAME,
    _IF_NUMBER,
    _IF_INDEX,
    _IF_DESCR,
    _IF_SPEED,
    _IF_OPER,
    _IF_IN,
    _IF_OUT,
    _IF_NAME,
    _IF_HC_IN,
    _IF_HC_OUT,
    _IF_HIGH_SPEED,
) = range(14)


@dataclass(frozen=True, slots=True)
class _Interface:
    index: int
    name: str
    role: str  # "lo", "wan" or "lan"


@dataclass(slots=True)
class _Entry:
    oid: tuple[int, ...]
    oid_tlv: bytes
    tag: int
    kind: int
    interface: _Interface | None


@dataclass(slots=True)
class _View:
    """The MIB view shared by every site with the same interface layout and counter width."""

    entries: list[_Entry]
    oids: list[tuple[int, ...]]
    by_content: dict[bytes, _Entry]
    has_x_table: bool
    interfaces: int
    plans: dict[bytes, list[tuple[_Entry | None, bytes]]] = field(default_factory=dict)


@dataclass(slots=True)
class AgentStats:
    """What the agent saw since it started."""

    requests: int = 0
    answered: int = 0
    delayed: int = 0
    unknown_address: int = 0
    wrong_community: int = 0
    silent_down: int = 0
    malformed: int = 0
    answered_native: int = 0  # of ``answered``: by the compiled fast path

    def as_dict(self) -> dict[str, int]:
        """Return the counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add_native(self, counts: dict[str, int]) -> None:
        """Add what the compiled fast path answered or silenced (lab.native.snmp_fast)."""
        self.requests += counts["requests"]
        self.answered += counts["answered"]
        self.answered_native += counts["answered"]
        self.silent_down += counts["silent_down"]


def site_interfaces(inventory: LabInventory, i: int) -> list[_Interface]:
    """Return site ``i``'s interfaces (lo, WAN, LAN) in ifIndex order."""
    wan_index = inventory.wan_index(i)
    wan = _Interface(wan_index, inventory.wan_if_names[i] or "wan0", "wan")
    lan = _Interface(wan_index + 1, "lan0", "lan")
    found = [wan, lan]
    if wan_index != 1:
        found.append(_Interface(1, "lo", "lo"))
    return sorted(found, key=lambda iface: iface.index)


def _build_view(interfaces: list[_Interface], x_table: bool) -> _View:
    raw: list[tuple[tuple[int, ...], int, int, _Interface | None]] = [
        (SYS_DESCR, ber.OCTET_STRING, _SYS_DESCR, None),
        (SYS_UPTIME, ber.TIMETICKS, _SYS_UPTIME, None),
        (SYS_NAME, ber.OCTET_STRING, _SYS_NAME, None),
        (IF_NUMBER, ber.INTEGER, _IF_NUMBER, None),
    ]
    columns: list[tuple[tuple[int, ...], int, int]] = [
        (IF_INDEX, ber.INTEGER, _IF_INDEX),
        (IF_DESCR, ber.OCTET_STRING, _IF_DESCR),
        (IF_SPEED, ber.GAUGE32, _IF_SPEED),
        (IF_OPER_STATUS, ber.INTEGER, _IF_OPER),
        (IF_IN_OCTETS, ber.COUNTER32, _IF_IN),
        (IF_OUT_OCTETS, ber.COUNTER32, _IF_OUT),
    ]
    if x_table:
        columns += [
            (IF_NAME, ber.OCTET_STRING, _IF_NAME),
            (IF_HC_IN_OCTETS, ber.COUNTER64, _IF_HC_IN),
            (IF_HC_OUT_OCTETS, ber.COUNTER64, _IF_HC_OUT),
            (IF_HIGH_SPEED, ber.GAUGE32, _IF_HIGH_SPEED),
        ]
    for column, tag, kind in columns:
        for iface in interfaces:
            raw.append(((*column, iface.index), tag, kind, iface))
    raw.sort(key=lambda item: item[0])
    entries = [_Entry(oid, ber.encode_oid(oid), tag, kind, iface) for oid, tag, kind, iface in raw]
    return _View(
        entries=entries,
        oids=[e.oid for e in entries],
        by_content={ber.oid_content(e.oid): e for e in entries},
        has_x_table=x_table,
        interfaces=len(interfaces),
    )


class _Responder:
    """Answers requests for the sites of one inventory (one instance per process)."""

    def __init__(self, inventory: LabInventory) -> None:
        self.inventory = inventory
        self.stats = AgentStats()
        self._views: dict[tuple[tuple[_Interface, ...], bool], _View] = {}
        self._site_views: dict[int, _View] = {}
        self._communities: dict[int, bytes] = {}

    def view(self, i: int, behaviour: SiteBehaviour) -> _View:
        found = self._site_views.get(i)
        if found is None:
            interfaces = tuple(site_interfaces(self.inventory, i))
            key = (interfaces, behaviour.counter_bits == 64)
            found = self._views.get(key)
            if found is None:
                found = _build_view(list(interfaces), key[1])
                self._views[key] = found
            self._site_views[i] = found
        return found

    def warm(self) -> None:
        """Make every site's view and community now, not on its first request."""
        for i in range(len(self.inventory)):
            self.view(i, self.inventory.behaviour(i))
            self.community(i)

    def community(self, i: int) -> bytes:
        found = self._communities.get(i)
        if found is None:
            found = self.inventory.communities[i].encode("utf-8")
            self._communities[i] = found
        return found

    def answer(self, data: bytes, destination: bytes, now: float) -> tuple[bytes, float] | None:
        """Return (response, delay in s) for a request to ``destination``, or None (silence)."""
        self.stats.requests += 1
        i = self.inventory.by_address.get(destination)
        if i is None:
            self.stats.unknown_address += 1
            return None
        try:
            version, community, pdu, request_id, _, _, at = ber.decode_header(data)
        except ber.BerError:
            self.stats.malformed += 1
            return None
        if version != ber.VERSION_2C or community != self.community(i):
            self.stats.wrong_community += 1
            return None
        behaviour = self.inventory.behaviour(i)
        if not behaviour.answers(now):
            self.stats.silent_down += 1
            return None
        view = self.view(i, behaviour)
        status = index = 0
        if pdu == ber.GET_REQUEST:
            # Probes send the same varbind list again and again: its plan is kept per view.
            key = data[at:]
            plan = view.plans.get(key)
            if plan is None:
                try:
                    request = ber.decode_raw(data)
                except ber.BerError:
                    self.stats.malformed += 1
                    return None
                plan = [
                    (view.by_content.get(oid_raw), oid_raw)
                    for oid_raw, _, _ in request.varbinds[:MAX_VARBINDS]
                ]
                if len(view.plans) < MAX_PLANS:
                    view.plans[key] = plan
            body = self._get(i, behaviour, view, plan, now)
        else:
            try:
                request = ber.decode_raw(data)
            except ber.BerError:
                self.stats.malformed += 1
                return None
            if pdu == ber.GET_NEXT_REQUEST:
                body = self._next(i, behaviour, view, [v[0] for v in request.varbinds], 1, now)
            elif pdu == ber.GET_BULK_REQUEST:
                body = self._bulk(i, behaviour, view, request, now)
            elif pdu == ber.SET_REQUEST:
                body = b"".join(
                    ber.encode_tlv(
                        ber.SEQUENCE, ber.encode_tlv(ber.OBJECT_IDENTIFIER, oid) + b"\x05\x00"
                    )
                    for oid, _, _ in request.varbinds
                )
                status, index = _NO_ACCESS, 1
            else:
                self.stats.malformed += 1
                return None
        self.stats.answered += 1
        if behaviour.slow_delay_s:
            self.stats.delayed += 1
        return (
            _response(community, request_id, status, index, body),
            behaviour.slow_delay_s,
        )

    def _value(self, i: int, behaviour: SiteBehaviour, entry: _Entry, now: float) -> int | bytes:
        kind = entry.kind
        iface = entry.interface
        if kind == _SYS_UPTIME:
            return behaviour.sys_uptime(now)
        if kind in _COUNTERS:
            assert iface is not None
            return _counter(kind, iface.role, behaviour.octets(now))
        if kind == _IF_OPER:
            assert iface is not None
            return behaviour.wan_oper_status if iface.role == "wan" else 1
        if kind == _IF_HIGH_SPEED:
            assert iface is not None
            return {"wan": behaviour.high_speed_mbps, "lan": 1000, "lo": 10}[iface.role]
        if kind == _IF_SPEED:
            assert iface is not None
            return {"wan": behaviour.if_speed_bps, "lan": 1_000_000_000, "lo": 10_000_000}[
                iface.role
            ]
        if kind in (_IF_DESCR, _IF_NAME):
            assert iface is not None
            return iface.name.encode("utf-8")
        if kind == _IF_INDEX:
            assert iface is not None
            return iface.index
        if kind == _IF_NUMBER:
            return self.view(i, behaviour).interfaces
        if kind == _SYS_NAME:
            return behaviour.site_key.encode("utf-8")
        return f"Conectado lab agent, {behaviour.counter_bits}-bit counters".encode()

    def _get(
        self,
        i: int,
        behaviour: SiteBehaviour,
        view: _View,
        plan: list[tuple[_Entry | None, bytes]],
        now: float,
    ) -> bytes:
        # The hot path of the lab: counters are computed once per request, and each varbind is
        # the entry's precomputed OID TLV plus a value TLV built without generic helpers.
        parts = []
        octets: tuple[int, int] | None = None
        for entry, oid_raw in plan:
            if entry is None:
                body = ber.encode_tlv(ber.OBJECT_IDENTIFIER, oid_raw) + _missing(view, oid_raw)
                parts.append(ber.encode_tlv(ber.SEQUENCE, body))
                continue
            iface = entry.interface
            if entry.kind in _COUNTERS and iface is not None:
                if octets is None:
                    octets = behaviour.octets(now)
                value: int | bytes = _counter(entry.kind, iface.role, octets)
            else:
                value = self._value(i, behaviour, entry, now)
            body = entry.oid_tlv + _value_tlv(entry.tag, value)
            if len(body) < 0x80:
                parts.append(b"\x30" + bytes((len(body),)) + body)
            else:
                parts.append(ber.encode_tlv(ber.SEQUENCE, body))
        return b"".join(parts)

    def _next_entry(self, view: _View, oid_raw: bytes) -> _Entry | None:
        try:
            oid = ber.decode_oid(oid_raw)
        except ber.BerError:
            return None
        at = bisect.bisect_right(view.oids, oid)
        return view.entries[at] if at < len(view.entries) else None

    def _next(
        self,
        i: int,
        behaviour: SiteBehaviour,
        view: _View,
        oids: list[bytes],
        repetitions: int,
        now: float,
    ) -> bytes:
        parts = []
        cursors = list(oids)
        for _ in range(repetitions):
            ended = 0
            for k, oid_raw in enumerate(cursors):
                entry = self._next_entry(view, oid_raw)
                if entry is None:
                    ended += 1
                    parts.append(
                        ber.encode_tlv(
                            ber.SEQUENCE,
                            ber.encode_tlv(ber.OBJECT_IDENTIFIER, oid_raw) + b"\x82\x00",
                        )
                    )
                    continue
                value = ber.encode_value(entry.tag, self._value(i, behaviour, entry, now))
                parts.append(ber.encode_tlv(ber.SEQUENCE, entry.oid_tlv + value))
                cursors[k] = ber.oid_content(entry.oid)
            if ended == len(cursors):
                break  # every column is past the end of the view: no point repeating
        return b"".join(parts)

    def _bulk(
        self, i: int, behaviour: SiteBehaviour, view: _View, request: ber.RawMessage, now: float
    ) -> bytes:
        oids = [v[0] for v in request.varbinds][:MAX_VARBINDS]
        non_repeaters = max(0, min(request.error_status, len(oids)))
        repetitions = max(0, min(request.error_index, MAX_BULK_REPETITIONS))
        head = self._next(i, behaviour, view, oids[:non_repeaters], 1, now)
        tail = self._next(i, behaviour, view, oids[non_repeaters:], repetitions, now)
        return head + tail


_COUNTERS: Final = frozenset({_IF_IN, _IF_OUT, _IF_HC_IN, _IF_HC_OUT})


def _counter(kind: int, role: str, octets: tuple[int, int]) -> int:
    """One octet counter of an interface from the WAN's (in, out) pair."""
    if role == "lo":
        return 0
    if role == "lan":  # what comes in on the WAN goes out on the LAN
        octets = (octets[1], octets[0])
    value = octets[0] if kind in (_IF_IN, _IF_HC_IN) else octets[1]
    return value & 0xFFFF_FFFF if kind in (_IF_IN, _IF_OUT) else value


def _value_tlv(tag: int, value: int | bytes) -> bytes:
    """The TLV of a value (short lengths inline; the generic encoder otherwise)."""
    if isinstance(value, int):
        if tag == ber.INTEGER:
            content = ber.integer_content(value)
        else:
            content = value.to_bytes(value.bit_length() // 8 + 1, "big")
        return bytes((tag, len(content))) + content
    if len(value) < 0x80:
        return bytes((tag, len(value))) + value
    return ber.encode_tlv(tag, value)


def _missing(view: _View, oid_raw: bytes) -> bytes:
    """noSuchInstance under an object the view has, noSuchObject otherwise."""
    try:
        oid = ber.decode_oid(oid_raw)
    except ber.BerError:
        return b"\x80\x00"
    for column in (SYSTEM, IF_TABLE, *((IF_X_TABLE,) if view.has_x_table else ())):
        if oid[: len(column)] == column:
            # Under a known table: the column exists when some instance of it does.
            at = bisect.bisect_left(view.oids, oid[: len(column) + 2])
            if at < len(view.oids) and view.oids[at][: len(column) + 2] == oid[: len(column) + 2]:
                return b"\x81\x00"
    return b"\x80\x00"


def _response(community: bytes, request_id: int, status: int, index: int, varbinds: bytes) -> bytes:
    pdu = (
        ber.encode_tlv(ber.INTEGER, ber.integer_content(request_id))
        + ber.encode_tlv(ber.INTEGER, ber.integer_content(status))
        + ber.encode_tlv(ber.INTEGER, ber.integer_content(index))
        + ber.encode_tlv(ber.SEQUENCE, varbinds)
    )
    return ber.encode_tlv(
        ber.SEQUENCE,
        _VERSION_TLV
        + ber.encode_tlv(ber.OCTET_STRING, community)
        + ber.encode_tlv(ber.RESPONSE, pdu),
    )


def open_agent_socket(host: str, port: int) -> socket.socket:
    """Bind the agent's UDP socket (SO_REUSEPORT, IP_PKTINFO, large buffers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


@dataclass(slots=True)
class _Delayed:
    due: float
    seq: int
    payload: bytes
    source: bytes
    addr: tuple[str, int]

    def __lt__(self, other: _Delayed) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


def serve(
    sock: socket.socket,
    inventory: LabInventory,
    *,
    stop: threading.Event,
    responder: _Responder | None = None,
    fast: SnmpFastPath | None = None,
) -> AgentStats:
    """Answer requests on ``sock`` until ``stop`` is set; return the counters.

    With ``fast`` (lab.native), batches of datagrams are read and the common GETs answered in
    C; what it leaves is answered here, as without it.
    """
    responder = responder or _Responder(inventory)
    delayed: list[_Delayed] = []
    seq = 0
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    pack = _PKTINFO.pack
    unpack = _PKTINFO.unpack_from
    pump = SnmpPump(fast) if fast is not None else None

    def handle(data: bytes, destination: bytes, addr: tuple[str, int], now: float) -> None:
        nonlocal seq
        answer = responder.answer(data, destination, now)
        if answer is None:
            return
        payload, delay = answer
        if delay > 0:
            seq += 1
            heapq.heappush(delayed, _Delayed(now + delay, seq, payload, destination, addr))
            return
        with contextlib.suppress(OSError):
            sock.sendmsg(
                [payload],
                [(socket.IPPROTO_IP, _IP_PKTINFO, pack(0, destination, b"\0\0\0\0"))],
                0,
                addr,
            )

    while not stop.is_set():
        wait_ms = 200
        if delayed:
            wait_ms = max(0, min(wait_ms, int((delayed[0].due - time.time()) * 1000) + 1))
        if poller.poll(wait_ms):
            now = time.time()
            if pump is not None:
                for _ in range(_READS_PER_WAKE // BATCH):
                    try:
                        got, handed = pump.pump(sock, now)
                    except OSError:
                        break
                    for left in handed:
                        handle(left.data, left.destination, left.source, now)
                    if got < BATCH:
                        break
            else:
                for _ in range(_READS_PER_WAKE):
                    try:
                        data, ancdata, _flags, addr = sock.recvmsg(65535, _ANC_SIZE)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue
                    destination = b""
                    for level, kind, cmsg in ancdata:
                        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO:
                            destination = unpack(cmsg)[2]
                    handle(data, destination, addr, now)
        now = time.time()
        while delayed and delayed[0].due <= now:
            item = heapq.heappop(delayed)
            with contextlib.suppress(OSError):
                sock.sendmsg(
                    [item.payload],
                    [(socket.IPPROTO_IP, _IP_PKTINFO, pack(0, item.source, b"\0\0\0\0"))],
                    0,
                    item.addr,
                )
    if pump is not None:
        responder.stats.add_native(pump.native_stats())
    return responder.stats


def _child(responder: _Responder, fast: SnmpFastPath | None, host: str, port: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sock = open_agent_socket(host, port)
    try:
        serve(sock, responder.inventory, stop=stop, responder=responder, fast=fast)
    finally:
        sock.close()


def run_snmp_agent(
    inventory: LabInventory,
    *,
    port: int = LAB_SNMP_PORT,
    host: str = "0.0.0.0",
    workers: int = 1,
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    native: bool = True,
) -> AgentStats:
    """Serve the lab's SNMP agent until SIGTERM/SIGINT (or ``stop``); blocks.

    ``workers`` > 1 runs that many responders (this process and forked children) sharing the
    port with SO_REUSEPORT (the kernel spreads requests by address). ``on_ready`` gets the
    bound port once requests are answered. ``native`` answers the common GETs with the
    compiled fast path when it is built (lab.native).
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Behaviours and views are made once before forking, so children share the pages and
    # the first round does not pay for every site's first contact.
    responder = _Responder(inventory)
    responder.warm()
    fast = SnmpFastPath.for_inventory(inventory) if native else None
    if threading.current_thread() is threading.main_thread():
        freeze_long_lived()  # an agent process; not a test's thread
    sock = open_agent_socket(host, port)
    bound = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    children: list[multiprocessing.context.ForkProcess] = []
    for _ in range(max(0, workers - 1)):
        child = context.Process(target=_child, args=(responder, fast, host, bound), daemon=True)
        child.start()
        children.append(child)
    if on_ready is not None:
        on_ready(bound)
    try:
        return serve(sock, inventory, stop=stop, responder=responder, fast=fast)
    finally:
        sock.close()
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        for child in children:
            child.join(timeout=5)


class RunningAgent:
    """A lab SNMP agent serving in a background thread (for tests and benchmarks)."""

    def __init__(
        self, inventory: LabInventory, *, host: str = "0.0.0.0", port: int = 0, native: bool = True
    ) -> None:
        self.inventory = inventory
        self.fast = SnmpFastPath.for_inventory(inventory) if native else None
        self.stop_event = threading.Event()
        self.sock = open_agent_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.stats = AgentStats()
        self._thread = threading.Thread(target=self._run, name="lab-snmp-agent", daemon=True)

    def _run(self) -> None:
        self.stats = serve(self.sock, self.inventory, stop=self.stop_event, fast=self.fast)

    def start(self) -> RunningAgent:
        """Start answering."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self.stop_event.set()
        self._thread.join(timeout=5)
        self.sock.close()


@contextlib.contextmanager
def running_snmp_agent(
    inventory: LabInventory, *, host: str = "0.0.0.0", port: int = 0, native: bool = True
) -> Iterator[RunningAgent]:
    """Run the lab agent in a thread for the duration of the block."""
    agent = RunningAgent(inventory, host=host, port=port, native=native).start()
    try:
        yield agent
    finally:
        agent.stop()
