"""SNMP probes of each site's WAN interface: v2c on a lean hot path, v3 through pysnmp.

One probe is one GET of ``sysUpTime.0, ifHCInOctets.X, ifHCOutOctets.X, ifOperStatus.X,
ifHighSpeed.X`` for the site's WAN interface X. An agent without the 64-bit ifHC* counters
(noSuchObject/noSuchInstance) is asked again for ``ifInOctets, ifOutOctets, ifSpeed`` and the
outcome says ``counter_bits=32``; an agent found 32-bit is asked for the 32-bit objects straight
away for the rest of the call (and later calls when ``counter32_agents`` is passed). A target
that names its interface (``if_name``) instead of giving ``if_index`` has the name resolved once
by walking ifName (GETBULK; ifDescr when the agent has no ifName) and cached in
``if_index_cache``; a cached index that stops existing is dropped and resolved again.

v2c: every request of a call goes out of one non-blocking UDP socket per address family,
multiplexed by request-id, built by splicing the id into a precomputed message and read back
with :mod:`probes.ber`. Requests time out in send order (one timeout for all, so the deadline
heap degenerates to a FIFO queue), each timed-out attempt is retried with a fresh request-id
while answers to earlier attempts are still accepted, and at most ``concurrency`` targets are in
progress at once. v3 (authPriv) goes through pysnmp (:mod:`probes.snmp_v3`) with a smaller
concurrency of its own.

The GETs of IPv4 agents run in a compiled loop when it is built (``probes/native/snmp_fast.c``,
``native=True``): it sends, retries, times out and reads answers itself, reports a plain answer
as facts that :meth:`_V2cRound._on_get` turns into the outcome, and hands every other datagram
back to :meth:`_V2cRound._on_datagram`, so the rules below are this module's in both cases
(``tests/probes/test_snmp_native.py`` compares the two).

Error classes (:class:`probes.model.ErrorClass`):

- ``timeout``: no valid answer after ``1 + retries`` attempts of ``timeout`` seconds each (so a
  dead target costs at most that). A v2c agent that does not know the community stays silent,
  so a wrong community is reported as ``timeout`` too (with that hint in the detail);
- ``refused``: ICMP port unreachable (nothing listens on the agent's port), attributed to the
  request through ``IP_RECVERR`` and the socket's error queue, which returns our own datagram;
- ``unreachable``: ICMP host/network unreachable, no route, or a host name that did not resolve;
- ``auth``: SNMPv3 USM errors (unknown user, wrong digest, decryption error, ...);
- ``bad_response``: an answer that decodes but is not what we asked (error-status set, other
  varbinds, wrong value types, a walk that does not advance);
- ``no_such_interface``: the agent has no such ifIndex, or no interface has that ifName/ifDescr;
- ``config``: the target cannot be probed as given (no community, no interface).

Datagrams that are malformed (truncated, garbage), oversized, carry a request-id nobody waits
for, come from another address, or are not a v2c Response for our community are dropped and
counted in :class:`SnmpStats`; they never end a probe early nor delay it past its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Final, Literal

from probes import ber
from probes.lanes import Lanes
from probes.model import ErrorClass, SnmpOutcome, SnmpTarget
from probes.native import snmp_fast as fast
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

IfIndexCache = dict[tuple[int, str], int]
"""Maps (site_id, if_name) to the ifIndex resolved for it."""


DEFAULT_TIMEOUT: Final = 2.0
DEFAULT_RETRIES: Final = 1
DEFAULT_CONCURRENCY: Final = 2000
V3_CONCURRENCY: Final = 64
MAX_DATAGRAM: Final = 16_384
"""Larger datagrams are dropped as oversized: our largest answer (a 16-row ifName page) is
a few hundred octets, so anything this big is a broken or hostile agent."""
WALK_PAGE: Final = 16
MAX_WALK_PAGES: Final = 64
SOCKET_BUFFER: Final = 4 * 1024 * 1024
_TICK_S: Final = 0.01
_READS_PER_WAKE: Final = 1024
_IP_RECVERR: Final = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR: Final = getattr(socket, "IPV6_RECVERR", 25)
_MSG_ERRQUEUE: Final = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_EE_HEADER: Final = struct.Struct("=IBBBBII")  # struct sock_extended_err
_SO_TIMESTAMPNS: Final = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC: Final = struct.Struct("=qq")  # struct timespec on 64-bit Linux
_ANC_SIZE: Final = socket.CMSG_SPACE(_TIMESPEC.size)
_REFUSED: Final = {errno.ECONNREFUSED}
_UNREACHABLE: Final = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
_NO_VALUE: Final = ber.EXCEPTION_TAGS | {ber.NULL}
log = logging.getLogger("conectado.probes.snmp")

_ERROR_STATUS: Final = [
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
]

# Probe stages.
_WALK_NAME: Final = 0
_WALK_DESCR: Final = 1
_GET64: Final = 2
_GET32: Final = 3


@dataclass(slots=True)
class SnmpStats:
    """What one call of :func:`probe_snmp_many` sent, received and dropped."""

    requests_sent: int = 0
    retransmissions: int = 0
    responses: int = 0
    malformed: int = 0
    oversized: int = 0
    unknown_request_id: int = 0
    wrong_source: int = 0
    not_a_response: int = 0
    icmp_errors: int = 0
    send_errors: int = 0
    walks: int = 0
    if_index_cache_hits: int = 0
    fallbacks_32bit: int = 0
    max_in_flight: int = 0

    @property
    def dropped(self) -> int:
        """Datagrams read and thrown away (malformed, oversized, unknown id, wrong source...)."""
        return (
            self.malformed
            + self.oversized
            + self.unknown_request_id
            + self.wrong_source
            + self.not_a_response
        )

    def add(self, other: SnmpStats) -> None:
        """Add ``other``'s counters to these (max_in_flight takes the larger)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, max(mine, theirs) if f.name == "max_in_flight" else mine + theirs)


def _error_status_name(status: int) -> str:
    return _ERROR_STATUS[status] if 0 <= status < len(_ERROR_STATUS) else str(status)


class _Templates:
    """Precomputed GET messages per (community, ifIndex, counter width), built on first use."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[bytes, int, int], ber.RequestTemplate] = {}

    def get(self, community: bytes, if_index: int, bits: int) -> ber.RequestTemplate:
        key = (community, if_index, bits)
        found = self._cache.get(key)
        if found is None:
            if bits == 64:
                oids = [
                    SYS_UPTIME,
                    (*IF_HC_IN_OCTETS, if_index),
                    (*IF_HC_OUT_OCTETS, if_index),
                    (*IF_OPER_STATUS, if_index),
                    (*IF_HIGH_SPEED, if_index),
                ]
            else:
                oids = [
                    SYS_UPTIME,
                    (*IF_IN_OCTETS, if_index),
                    (*IF_OUT_OCTETS, if_index),
                    (*IF_OPER_STATUS, if_index),
                    (*IF_SPEED, if_index),
                ]
            found = ber.RequestTemplate(community, ber.GET_REQUEST, oids)
            self._cache[key] = found
        return found


class _Probe:
    """The state of one target's probe while it is in progress."""

    __slots__ = (
        "addr",
        "community",
        "family",
        "finished",
        "from_cache",
        "high_speed",
        "if_index",
        "pos",
        "rid",
        "rids",
        "seen_count",
        "seen_names",
        "slot",
        "slow",
        "stage",
        "target",
        "template",
        "tries",
        "walk_base",
        "walk_cursor",
        "walk_pages",
    )

    def __init__(self, pos: int, target: SnmpTarget, addr: tuple[str, int], family: int) -> None:
        self.pos = pos
        self.slow = False  # started from the slow lane
        self.target = target
        self.addr = addr
        self.family = family
        self.community = (target.community or "").encode("utf-8")
        self.stage = _GET64
        self.if_index = target.if_index or 0
        self.from_cache = False
        self.finished = False
        self.high_speed: int | None = None
        self.rid = 0
        self.rids: list[int] = []
        self.tries = 0
        self.template: ber.RequestTemplate | None = None
        self.walk_base = b""
        self.walk_cursor: tuple[int, ...] = ()
        self.walk_pages = 0
        self.seen_count = 0
        self.seen_names: list[str] = []
        self.slot = -1  # its slot in the compiled loop, while its GETs run there


class _V2cRound:
    """One call's worth of v2c probes multiplexed over one socket per address family."""

    def __init__(
        self,
        *,
        timeout: float,
        retries: int,
        concurrency: int,
        if_index_cache: IfIndexCache,
        counter32_agents: set[tuple[str, int]],
        on_outcome: Callable[[SnmpOutcome], None] | None,
        stats: SnmpStats,
        native: bool = True,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
        self.cache = if_index_cache
        self.counter32 = counter32_agents
        self.on_outcome = on_outcome
        self.stats = stats
        self.templates = _Templates()
        self.sockets: dict[int, socket.socket] = {}
        self.inflight: dict[int, tuple[_Probe, float]] = {}
        self.active = 0  # probes in progress
        self.deadlines: deque[tuple[float, int]] = deque()
        self.backlog: deque[tuple[bytes, tuple[str, int], int]] = deque()
        self.writing: set[int] = set()
        self.pending: Lanes[tuple[int, SnmpTarget, tuple[str, int], int]] = Lanes(concurrency)
        self.results: dict[int, SnmpOutcome] = {}
        self.expected = 0
        self.next_rid = ber.REQUEST_ID_MIN + int.from_bytes(os.urandom(3), "big")
        self.done: asyncio.Future[None] | None = None
        self.ticker: asyncio.TimerHandle | None = None
        self.callback_error: BaseException | None = None
        self.filling = False
        # The compiled loop for IPv4 GETs, made on first use (None: every probe in Python).
        self.native = (
            native and fast.fits_fast_path(retries, concurrency) and fast.fast_path_available()
        )
        self.fast: fast.SnmpFastPath | None = None
        self.slot_probe: list[_Probe | None] = []
        self.free_slots: list[int] = []
        self.fast_writing = False

    # --- sockets ---------------------------------------------------------------------------

    def _socket(self, family: int) -> socket.socket:
        sock = self.sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
                    sock.bind(("::", 0))
                else:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                    sock.bind(("0.0.0.0", 0))
            except OSError:
                sock.close()
                raise
            self.sockets[family] = sock
            self.loop.add_reader(sock.fileno(), self._on_readable, sock)
        return sock

    def close(self) -> None:
        """Stop reading and close the sockets (the compiled loop's counters join ``stats``)."""
        if self.ticker is not None:
            self.ticker.cancel()
        if self.fast is not None:
            self.loop.remove_reader(self.fast.fd)
            if self.fast_writing:
                self.loop.remove_writer(self.fast.fd)
            sent, oversized, icmp, send_errors = self.fast.counters()
            self.stats.requests_sent += sent
            self.stats.oversized += oversized
            self.stats.icmp_errors += icmp
            self.stats.send_errors += send_errors
            self.fast.close()
            self.fast = None
        for sock in self.sockets.values():
            self.loop.remove_reader(sock.fileno())
            if sock.fileno() in self.writing:
                self.loop.remove_writer(sock.fileno())
            sock.close()
        self.sockets.clear()

    # --- the round ---------------------------------------------------------------------------

    async def run(self, work: list[tuple[int, SnmpTarget, tuple[str, int], int]]) -> None:
        """Probe every (position, target, address, family) and fill ``results``."""
        self.expected = len(work)
        if not work:
            return
        self.done = self.loop.create_future()
        cache = self.cache
        later: list[tuple[int, SnmpTarget, tuple[str, int], int]] = []
        for item in work:
            target = item[1]
            # A site whose interface must first be found by name needs two or more round
            # trips; on a slow link that is seconds, so it starts first, at the head of the
            # expected-slow, rather than trailing the round.
            if (
                target.if_index is None
                and target.if_name
                and (target.site_id, target.if_name) not in cache
            ):
                self.pending.push(item, slow=True)
            else:
                later.append(item)
        for item in later:
            self.pending.push(item, slow=item[1].expect_slow)
        self.ticker = self.loop.call_later(_TICK_S, self._tick)
        try:
            self._fill()
            await self.done
        finally:
            self.close()
        if self.callback_error is not None:
            raise self.callback_error

    def _fill(self) -> None:
        # Not re-entrant: a probe that fails while being started (refused, send error) ends
        # inside this loop, which then starts the next one itself.
        if self.filling:
            return
        self.filling = True
        try:
            while self.pending and self.active < self.concurrency:
                (pos, target, addr, family), slow = self.pending.pop()
                probe = _Probe(pos, target, addr, family)
                probe.slow = slow
                self.active += 1
                if self.active > self.stats.max_in_flight:
                    self.stats.max_in_flight = self.active
                self._begin(probe)
        finally:
            self.filling = False
            self._flush_fast()

    def _begin(self, probe: _Probe) -> None:
        target = probe.target
        if not target.community:
            self._fail(probe, ErrorClass.CONFIG, "no SNMP community configured for this site")
            return
        if target.if_index is None:
            if not target.if_name:
                self._fail(probe, ErrorClass.CONFIG, "no WAN interface (ifIndex or ifName) given")
                return
            cached = self.cache.get((target.site_id, target.if_name))
            if cached is None:
                self._start_walk(probe, _WALK_NAME)
                return
            self.stats.if_index_cache_hits += 1
            probe.if_index = cached
            probe.from_cache = True
        self._start_get(probe)

    def _start_get(self, probe: _Probe) -> None:
        bits = 32 if probe.addr in self.counter32 else 64
        probe.stage = _GET32 if bits == 32 else _GET64
        probe.template = self.templates.get(probe.community, probe.if_index, bits)
        self._new_stage(probe)

    def _start_walk(self, probe: _Probe, stage: int) -> None:
        self._release_slot(probe)  # walks run in Python
        self.stats.walks += 1 if stage == _WALK_NAME else 0
        base = IF_NAME if stage == _WALK_NAME else IF_DESCR
        probe.stage = stage
        probe.walk_base = ber.oid_content(base)
        probe.walk_cursor = base
        probe.walk_pages = 0
        probe.seen_count = 0
        probe.seen_names.clear()
        probe.template = None
        self._new_stage(probe)

    def _new_stage(self, probe: _Probe) -> None:
        for rid in probe.rids:
            self.inflight.pop(rid, None)
        probe.rids.clear()
        probe.tries = 0
        fits = self.native and probe.template is not None and probe.family == socket.AF_INET
        if not (fits and self._start_fast(probe)):
            self._send(probe)

    # --- the compiled loop (probes/native/snmp_fast.c) ----------------------------------------

    def _fast_path(self) -> fast.SnmpFastPath | None:
        if self.fast is None and self.native:
            try:
                self.fast = fast.SnmpFastPath(self.concurrency, self.timeout, self.retries)
            except OSError as exc:  # e.g. no file descriptor left for its socket
                log.warning("the compiled SNMP loop cannot start (%s): probes run in Python", exc)
                self.native = False
                return None
            self.slot_probe = [None] * self.concurrency
            self.free_slots = list(range(self.concurrency - 1, -1, -1))
            self.loop.add_reader(self.fast.fd, self._fast_poll)
        return self.fast

    def _start_fast(self, probe: _Probe) -> bool:
        """Start the probe's GET stage in the compiled loop; False to leave it to Python."""
        loop_ = self._fast_path()
        if loop_ is None:
            return False
        assert probe.template is not None
        template = loop_.template(probe.template)
        if template is None:
            return False
        if probe.slot < 0:
            if not self.free_slots:
                return False
            probe.slot = self.free_slots.pop()
            self.slot_probe[probe.slot] = probe
        failed = loop_.start(
            probe.slot,
            template,
            int.from_bytes(socket.inet_aton(probe.addr[0]), "big"),
            probe.addr[1],
        )
        if failed:
            self._fail(probe, ErrorClass.INTERNAL, f"cannot start the probe: {os.strerror(failed)}")
        return True

    def _flush_fast(self) -> None:
        """Send what the compiled loop queued (its datagrams go out many per system call)."""
        loop_ = self.fast
        if loop_ is None:
            return
        state = loop_.flush()
        if state & fast.FLUSH_RECORDS:  # a failed send or a drained ICMP error ended a probe
            self.loop.call_soon(self._fast_poll)
        self._watch_writable(loop_, bool(state & fast.FLUSH_BLOCKED))

    def _watch_writable(self, loop_: fast.SnmpFastPath, blocked: bool) -> None:
        if blocked != self.fast_writing:
            if blocked:
                self.loop.add_writer(loop_.fd, self._fast_poll)
            else:
                self.loop.remove_writer(loop_.fd)
            self.fast_writing = blocked

    def _release_slot(self, probe: _Probe) -> None:
        # The compiled loop's slot is idle by now: it ended the stage with a record, or the
        # engine cancelled it when it took a handed-back answer.
        if probe.slot >= 0:
            self.slot_probe[probe.slot] = None
            self.free_slots.append(probe.slot)
            probe.slot = -1

    def _fast_poll(self) -> None:
        loop_ = self.fast
        if loop_ is None:
            return
        try:
            while True:
                records = loop_.poll()
                for record in records:
                    self._fast_record(loop_, record)
                if len(records) < fast.RECORDS_PER_POLL:
                    break
        finally:
            if self.pending and self.active < self.concurrency:
                self._fill()  # which flushes
            else:
                self._flush_fast()

    def _fast_record(self, loop_: fast.SnmpFastPath, record: fast.FastRecord) -> None:
        kind = record.kind
        if kind == fast.KIND_DATAGRAM:
            addr = (socket.inet_ntoa(record.src_ip.to_bytes(4, "big")), record.src_port)
            self._on_datagram(loop_.datagram(record), addr, record.arrival, loop_)
            if record.slot >= 0:
                loop_.unhold(record.slot)  # nothing when the engine took the answer
            return
        probe = self.slot_probe[record.slot]
        if probe is None:  # defensive: a slot ends once, and is free only after that
            return
        if kind == fast.KIND_ANSWER:
            self.stats.responses += 1
            values: list[tuple[int, ber.Value]] = [
                _fast_value(record.t0, record.v0),
                _fast_value(record.t1, record.v1),
                _fast_value(record.t2, record.v2),
                _fast_value(record.t3, record.v3),
                _fast_value(record.t4, record.v4),
            ]
            latency_ms = (record.arrival - record.sent_at) * 1e3
            self._on_get(
                probe,
                record.error_status,
                record.error_index,
                values,
                latency_ms,
                record.arrival,
            )
        elif kind == fast.KIND_RETRY:
            probe.tries += 1
            if not probe.slow:
                probe.slow = True
                self.pending.turned_slow()
            self.stats.retransmissions += 1
        elif kind == fast.KIND_TIMEOUT:
            self._timed_out(probe)
        elif kind == fast.KIND_REFUSED:
            self._fail(probe, ErrorClass.REFUSED, _refused_detail(probe.addr))
        elif kind == fast.KIND_UNREACHABLE:
            self._fail(probe, ErrorClass.UNREACHABLE, _unreachable_detail(probe.addr, record.err))
        else:  # KIND_SEND_FAILED
            self._fail(probe, ErrorClass.UNREACHABLE, _send_failed_detail(probe.addr, record.err))

    def _message(self, probe: _Probe, rid: int) -> bytes:
        if probe.template is not None:
            return probe.template.build(rid)
        return ber.encode_message(
            community=probe.community,
            pdu_type=ber.GET_BULK_REQUEST,
            request_id=rid,
            varbinds=[(probe.walk_cursor, ber.NULL, None)],
            error_status=0,
            error_index=WALK_PAGE,
        )

    def _send(self, probe: _Probe) -> None:
        rid = self.next_rid
        self.next_rid = rid + 1 if rid < ber.REQUEST_ID_MAX else ber.REQUEST_ID_MIN
        data = self._message(probe, rid)
        probe.rid = rid
        probe.rids.append(rid)
        self.inflight[rid] = (probe, time.time())
        self.deadlines.append((time.monotonic() + self.timeout, rid))
        self.stats.requests_sent += 1
        sock = self.sockets.get(probe.family)
        if sock is None:
            try:
                sock = self._socket(probe.family)
            except OSError as exc:  # e.g. no file descriptor left
                self._fail(probe, ErrorClass.INTERNAL, f"no socket: {exc.strerror or exc}")
                return
        if self.backlog:
            self._queue(data, probe.addr, probe.family)
            return
        try:
            sock.sendto(data, probe.addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, probe.addr, probe.family)
        except OSError as exc:
            self._send_failed(probe, exc)

    def _send_failed(self, probe: _Probe, exc: OSError) -> None:
        if exc.errno in _REFUSED:
            # A pending ICMP error of another target surfaced here; this datagram was not sent.
            self._drain_errors(self.sockets[probe.family])
            try:
                self.sockets[probe.family].sendto(self._message(probe, probe.rid), probe.addr)
                return
            except OSError as again:
                exc = again
        self.stats.send_errors += 1
        self._fail(probe, ErrorClass.UNREACHABLE, _send_failed_detail(probe.addr, exc.errno))

    def _queue(self, data: bytes, addr: tuple[str, int], family: int) -> None:
        self.backlog.append((data, addr, family))
        fd = self.sockets[family].fileno()
        if fd not in self.writing:
            self.writing.add(fd)
            self.loop.add_writer(fd, self._flush)

    def _flush(self) -> None:
        while self.backlog:
            data, addr, family = self.backlog[0]
            try:
                self.sockets[family].sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.send_errors += 1  # the attempt will time out and be retried
            self.backlog.popleft()
        for fd in self.writing:
            self.loop.remove_writer(fd)
        self.writing.clear()

    # --- timeouts ------------------------------------------------------------------------------

    def _tick(self) -> None:
        # Answers already in the socket were in time: read them before declaring timeouts,
        # even when the event loop was too busy to call the reader first.
        for sock in list(self.sockets.values()):
            self._on_readable(sock)
        self._fast_poll()  # the compiled loop keeps its own deadlines
        now = time.monotonic()
        deadlines = self.deadlines
        inflight = self.inflight
        try:
            while deadlines and deadlines[0][0] <= now:
                _, rid = deadlines.popleft()
                entry = inflight.get(rid)
                if entry is None or entry[0].rid != rid:
                    continue  # answered, or an earlier attempt of a probe that is retrying
                probe = entry[0]
                if probe.tries < self.retries:
                    probe.tries += 1
                    if not probe.slow:
                        probe.slow = True
                        self.pending.turned_slow()
                    self.stats.retransmissions += 1
                    self._send(probe)
                else:
                    self._timed_out(probe)
        finally:
            if self.pending and self.active < self.concurrency:
                self._fill()
            if self.done is not None and not self.done.done():
                self.ticker = self.loop.call_later(_TICK_S, self._tick)

    def _timed_out(self, probe: _Probe) -> None:
        attempts = probe.tries + 1
        what = {
            _GET64: "the GET",
            _GET32: "the 32-bit GET",
            _WALK_NAME: "the ifName walk",
            _WALK_DESCR: "the ifDescr walk",
        }[probe.stage]
        self._fail(
            probe,
            ErrorClass.TIMEOUT,
            f"no answer to {what} after {attempts} attempt(s) of {self.timeout:g} s "
            "(a v2c agent also stays silent when the community is wrong)",
        )

    # --- receiving -----------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket) -> None:
        batch: list[tuple[bytes, tuple[str, int], float]] = []
        timestamp = _TIMESPEC.unpack
        for _ in range(_READS_PER_WAKE):
            try:
                data, ancdata, _flags, addr = sock.recvmsg(65536, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # A pending ICMP error (sk_err) is reported once before queued data.
                self._drain_errors(sock)
                continue
            arrival = 0.0
            for _level, kind, value in ancdata:
                if kind == _SO_TIMESTAMPNS and len(value) == _TIMESPEC.size:
                    seconds, nanoseconds = timestamp(value)
                    arrival = seconds + nanoseconds * 1e-9
            batch.append((data, addr, arrival))
        if not batch:
            self._drain_errors(sock)
            return
        wall = time.time()
        try:
            for data, addr, arrival in batch:
                # The kernel's receive timestamp: true even when the event loop was busy.
                self._on_datagram(data, addr, arrival or wall, None)
        finally:
            if self.pending and self.active < self.concurrency:
                self._fill()  # which flushes
            else:
                self._flush_fast()  # stages that a walk's end started in the compiled loop

    def _on_datagram(
        self,
        data: bytes,
        addr: tuple[str, int],
        arrived: float,
        loop_: fast.SnmpFastPath | None,
    ) -> None:
        """One datagram read from our socket, or handed back by the compiled loop (``loop_``,
        whose slots stand for ``inflight`` then): an answer goes to its probe, anything else
        is dropped and counted."""
        stats = self.stats
        if len(data) > MAX_DATAGRAM:
            stats.oversized += 1
            return
        try:
            version, community, pdu_type, rid, status, index, at = ber.decode_header(data)
        except ber.BerError:
            stats.malformed += 1
            return
        if loop_ is None:
            entry = self.inflight.get(rid)
        else:
            slot, sent = loop_.lookup(rid)
            held = self.slot_probe[slot] if slot >= 0 else None
            entry = (held, sent) if held is not None else None
        if entry is None:
            stats.unknown_request_id += 1
            return
        probe, sent_at = entry
        if addr[0] != probe.addr[0] or addr[1] != probe.addr[1]:
            stats.wrong_source += 1
            return
        if pdu_type != ber.RESPONSE or version != ber.VERSION_2C or community != probe.community:
            stats.not_a_response += 1
            return
        if probe.stage >= _GET64:
            template = probe.template
            assert template is not None
            values = ber.match_varbinds(data, at, template.oid_tlvs)
            if values is None:
                # Not the plain answer: decode in full to tell junk from a wrong answer.
                try:
                    raw = ber.decode_raw(data)
                except ber.BerError:
                    stats.malformed += 1
                    return
                names = tuple(name for name, _, _ in raw.varbinds)
                if names == template.oid_contents:
                    values = [(tag, value) for _, tag, value in raw.varbinds]
            stats.responses += 1
            if loop_ is not None:
                loop_.cancel(probe.slot)  # the compiled loop stops waiting for it
            self._on_get(probe, status, index, values, (arrived - sent_at) * 1e3, arrived)
        else:
            try:
                raw = ber.decode_raw(data)
            except ber.BerError:
                stats.malformed += 1
                return
            stats.responses += 1
            self._on_walk(probe, raw)

    def _drain_errors(self, sock: socket.socket) -> None:
        """Read the socket's error queue: ICMP errors, each with the datagram that caused it."""
        self._read_errors(sock)
        if self.pending and self.active < self.concurrency:
            self._fill()

    def _read_errors(self, sock: socket.socket) -> None:
        while True:
            try:
                payload, ancdata, _flags, _addr = sock.recvmsg(2048, 512, _MSG_ERRQUEUE)
            except OSError:  # BlockingIOError: the queue is empty
                return
            code = 0
            for level, kind, cmsg in ancdata:
                if (level, kind) in (
                    (socket.IPPROTO_IP, _IP_RECVERR),
                    (socket.IPPROTO_IPV6, _IPV6_RECVERR),
                ) and len(cmsg) >= _EE_HEADER.size:
                    code = _EE_HEADER.unpack_from(cmsg)[0]
            self.stats.icmp_errors += 1
            rid = ber.peek_request_id(payload)
            entry = self.inflight.get(rid) if rid is not None else None
            if entry is None:
                continue
            probe = entry[0]
            if code in _REFUSED:
                self._fail(probe, ErrorClass.REFUSED, _refused_detail(probe.addr))
            elif code in _UNREACHABLE:
                self._fail(probe, ErrorClass.UNREACHABLE, _unreachable_detail(probe.addr, code))
            # Other ICMP errors (e.g. fragmentation needed) leave the attempt to time out.

    # --- answers -------------------------------------------------------------------------------

    def _on_get(
        self,
        probe: _Probe,
        error_status: int,
        error_index: int,
        values: list[tuple[int, ber.Value]] | None,
        latency_ms: float,
        wall: float,
    ) -> None:
        if error_status:
            self._fail(
                probe,
                ErrorClass.BAD_RESPONSE,
                f"agent answered error-status {_error_status_name(error_status)} "
                f"at varbind {error_index}",
            )
            return
        if values is None or len(values) != 5:
            self._fail(
                probe, ErrorClass.BAD_RESPONSE, "answer's varbinds are not the OIDs asked for"
            )
            return
        (t_up, uptime), (t_in, v_in), (t_out, v_out), (t_oper, oper), (t_speed, speed) = values
        if t_oper in ber.EXCEPTION_TAGS:
            if probe.from_cache and probe.target.if_name:
                # The cached index vanished (renumbered after a reboot?): resolve the name again.
                self.cache.pop((probe.target.site_id, probe.target.if_name), None)
                probe.from_cache = False
                self._start_walk(probe, _WALK_NAME)
                return
            self._fail(
                probe,
                ErrorClass.NO_SUCH_INTERFACE,
                f"the agent has no interface with ifIndex {probe.if_index}",
            )
            return
        if t_up != ber.TIMETICKS or t_oper != ber.INTEGER:
            self._fail(
                probe,
                ErrorClass.BAD_RESPONSE,
                "sysUpTime is not TimeTicks or ifOperStatus is not INTEGER",
            )
            return
        if probe.stage == _GET64:
            if t_in in ber.EXCEPTION_TAGS or t_out in ber.EXCEPTION_TAGS:
                self.stats.fallbacks_32bit += 1
                self.counter32.add(probe.addr)
                if t_speed == ber.GAUGE32 and isinstance(speed, int):
                    probe.high_speed = speed
                probe.stage = _GET32
                probe.template = self.templates.get(probe.community, probe.if_index, 32)
                self._new_stage(probe)
                return
            counter_tag = ber.COUNTER64
            bits: Literal[32, 64] = 64
            high_speed = speed if t_speed == ber.GAUGE32 else None
        else:
            counter_tag = ber.COUNTER32
            bits = 32
            if probe.high_speed is not None:
                high_speed = probe.high_speed
            elif t_speed == ber.GAUGE32 and isinstance(speed, int):
                high_speed = speed // 1_000_000
            else:
                high_speed = None
        if t_in != counter_tag or t_out != counter_tag:
            self._fail(
                probe,
                ErrorClass.BAD_RESPONSE,
                f"interface counters are not Counter{bits} (tags 0x{t_in:02x}, 0x{t_out:02x})",
            )
            return
        if t_speed != ber.GAUGE32 and t_speed not in ber.EXCEPTION_TAGS:
            self._fail(probe, ErrorClass.BAD_RESPONSE, "interface speed is not a Gauge32")
            return
        assert isinstance(uptime, int) and isinstance(v_in, int) and isinstance(v_out, int)
        assert isinstance(oper, int)
        self._finish(
            probe,
            SnmpOutcome(
                site_id=probe.target.site_id,
                ts=datetime.fromtimestamp(wall, UTC),
                ok=True,
                latency_ms=latency_ms,
                if_index=probe.if_index,
                sys_uptime=uptime,
                in_octets=v_in,
                out_octets=v_out,
                counter_bits=bits,
                oper_status=oper,
                high_speed_mbps=high_speed if isinstance(high_speed, int) else None,
            ),
        )

    def _on_walk(self, probe: _Probe, raw: ber.RawMessage) -> None:
        if raw.error_status:
            self._fail(
                probe,
                ErrorClass.BAD_RESPONSE,
                f"agent answered the interface walk with error-status "
                f"{_error_status_name(raw.error_status)}",
            )
            return
        base = probe.walk_base
        row_length = len(IF_NAME if probe.stage == _WALK_NAME else IF_DESCR) + 1
        wanted = probe.target.if_name or ""
        cursor = probe.walk_cursor
        finished = not raw.varbinds
        for oid_raw, tag, value in raw.varbinds:
            if tag == ber.END_OF_MIB_VIEW or not oid_raw.startswith(base):
                finished = True
                break
            oid = ber.decode_oid(oid_raw)
            if oid <= cursor:
                self._fail(probe, ErrorClass.BAD_RESPONSE, "interface walk did not advance")
                return
            cursor = oid
            if len(oid) != row_length:
                continue
            name = value.decode("utf-8", "replace") if isinstance(value, bytes) else ""
            probe.seen_count += 1
            if len(probe.seen_names) < 12:
                probe.seen_names.append(name)
            if name == wanted:
                probe.if_index = oid[-1]
                self.cache[(probe.target.site_id, wanted)] = oid[-1]
                self._start_get(probe)
                return
        probe.walk_pages += 1
        if not finished and probe.walk_pages < MAX_WALK_PAGES:
            probe.walk_cursor = cursor
            self._new_stage(probe)
            return
        if probe.stage == _WALK_NAME and probe.seen_count == 0:
            self._start_walk(probe, _WALK_DESCR)  # an agent without ifXTable: try ifDescr
            return
        column = "ifName" if probe.stage == _WALK_NAME else "ifDescr"
        shown = ", ".join(repr(n) for n in probe.seen_names)
        more = ", ..." if probe.seen_count > len(probe.seen_names) else ""
        self._fail(
            probe,
            ErrorClass.NO_SUCH_INTERFACE,
            f"no interface has {column} {wanted!r} (the agent lists {probe.seen_count}"
            + (f": {shown}{more})" if shown else ")"),
        )

    # --- endings -------------------------------------------------------------------------------

    def _fail(self, probe: _Probe, error: ErrorClass, detail: str) -> None:
        self._finish(
            probe,
            SnmpOutcome(
                site_id=probe.target.site_id,
                ts=datetime.now(UTC),
                ok=False,
                error=error,
                error_detail=detail,
                if_index=probe.if_index or None,
            ),
        )

    def _finish(self, probe: _Probe, outcome: SnmpOutcome) -> None:
        if probe.finished:
            return
        probe.finished = True
        self._release_slot(probe)
        self.active -= 1
        if probe.slow:
            self.pending.slow_done()
        for rid in probe.rids:
            self.inflight.pop(rid, None)
        probe.rids.clear()
        self.results[probe.pos] = outcome
        if self.on_outcome is not None and self.callback_error is None:
            try:
                self.on_outcome(outcome)
            except Exception as exc:  # a caller's bug must not wedge the round
                self.callback_error = exc
        if len(self.results) >= self.expected and self.done is not None and not self.done.done():
            self.done.set_result(None)


def _fast_value(tag: int, value: int) -> tuple[int, ber.Value]:
    """A compiled-loop answer's (tag, value) as probes.ber.match_varbinds gives it."""
    if tag in _NO_VALUE:
        return tag, None
    if value < 0 and tag != ber.INTEGER:
        value += 1 << 64  # an unsigned type's 64-bit pattern
    return tag, value


def _send_failed_detail(addr: tuple[str, int], code: int | None) -> str:
    reason = os.strerror(code) if code else "send failed"
    return f"cannot send to {addr[0]}: {reason}"


def _refused_detail(addr: tuple[str, int]) -> str:
    return f"ICMP port unreachable: nothing listens on {addr[0]} UDP port {addr[1]}"


def _unreachable_detail(addr: tuple[str, int], code: int) -> str:
    return f"ICMP {os.strerror(code).lower()} for {addr[0]}"


def _literal_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an address literal, None for a host name."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return socket.AF_INET
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return socket.AF_INET6
    except OSError:
        return None


async def _resolve(hosts: set[str]) -> dict[str, tuple[int, str] | str]:
    """Resolve host names: (family, address), or an error text."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(32)

    async def one(host: str) -> tuple[str, tuple[int, str] | str]:
        async with gate:
            try:
                info = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except (OSError, UnicodeError) as exc:  # UnicodeError: not a valid IDNA name
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                return host, f"host name {host!r} did not resolve ({reason})"
        family, _, _, _, sockaddr = info[0]
        return host, (int(family), str(sockaddr[0]))

    return dict(await asyncio.gather(*(one(h) for h in hosts)))


async def probe_snmp_many(
    targets: Sequence[SnmpTarget],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    concurrency: int = DEFAULT_CONCURRENCY,
    if_index_cache: dict[tuple[int, str], int] | None = None,
    on_outcome: Callable[[SnmpOutcome], None] | None = None,
    stats: SnmpStats | None = None,
    counter32_agents: set[tuple[str, int]] | None = None,
    native: bool = True,
) -> list[SnmpOutcome]:
    """One outcome per target (same order); never raises for a target's failure.

    ``on_outcome`` is called as each outcome is ready (an exception it raises is re-raised
    once the whole call is done). ``stats``, when given, receives the call's counters.
    ``counter32_agents`` remembers (address, port) of agents found 32-bit-only across calls.
    With ``native`` (and ``probes/native/_snmp_fast.so`` built), the v2c GETs of IPv4 agents run
    in the compiled loop, with the same outcomes; False runs every probe in Python.
    """
    if timeout <= 0 or retries < 0 or concurrency < 1:
        raise ValueError("timeout must be > 0, retries ≥ 0 and concurrency ≥ 1")
    stats = stats if stats is not None else SnmpStats()
    cache: IfIndexCache = if_index_cache if if_index_cache is not None else {}
    agents32 = counter32_agents if counter32_agents is not None else set()
    results: list[SnmpOutcome | None] = [None] * len(targets)

    def fail(pos: int, target: SnmpTarget, error: ErrorClass, detail: str) -> None:
        outcome = SnmpOutcome(
            site_id=target.site_id, ts=datetime.now(UTC), ok=False, error=error, error_detail=detail
        )
        results[pos] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    families = {host: _literal_family(host) for host in {t.host for t in targets}}
    names = {host for host, family in families.items() if family is None}
    resolved = await _resolve(names) if names else {}
    v2c: list[tuple[int, SnmpTarget, tuple[str, int], int]] = []
    v3: list[tuple[int, SnmpTarget]] = []
    for pos, target in enumerate(targets):
        if target.version == "3":
            v3.append((pos, target))
            continue
        if not 0 < target.port < 65536:
            fail(pos, target, ErrorClass.CONFIG, f"SNMP port {target.port} is not 1..65535")
            continue
        family = families[target.host]
        host = target.host
        if family is None:
            found = resolved[target.host]
            if isinstance(found, str):
                fail(pos, target, ErrorClass.UNREACHABLE, found)
                continue
            family, host = found
        v2c.append((pos, target, (host, target.port), family))

    async def run_v2c() -> None:
        round_ = _V2cRound(
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            if_index_cache=cache,
            counter32_agents=agents32,
            on_outcome=on_outcome,
            stats=stats,
            native=native,
        )
        await round_.run(v2c)
        for pos, outcome in round_.results.items():
            results[pos] = outcome

    batch3 = None
    if v3:
        from probes.snmp_v3 import V3Batch  # pysnmp is heavy: imported only when needed

        batch3 = V3Batch(
            [t for _, t in v3],
            timeout=timeout,
            retries=retries,
            concurrency=min(concurrency, V3_CONCURRENCY),
            if_index_cache=cache,
        )

    async def run_v3() -> None:
        assert batch3 is not None
        outcomes = await batch3.run(on_outcome)
        for (pos, _), outcome in zip(v3, outcomes, strict=True):
            results[pos] = outcome

    jobs = [run_v2c()] if v2c else []
    if v3:
        jobs.append(run_v3())
    await asyncio.gather(*jobs)
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:  # defensive: every path above fills its slot
        for pos in missing:
            fail(pos, targets[pos], ErrorClass.INTERNAL, "the probe ended without an outcome")
    return [r for r in results if r is not None]


def probe_snmp_many_sync(
    targets: Sequence[SnmpTarget],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    concurrency: int = DEFAULT_CONCURRENCY,
    if_index_cache: dict[tuple[int, str], int] | None = None,
    on_outcome: Callable[[SnmpOutcome], None] | None = None,
    stats: SnmpStats | None = None,
    counter32_agents: set[tuple[str, int]] | None = None,
    native: bool = True,
) -> list[SnmpOutcome]:
    """Run :func:`probe_snmp_many` in a fresh event loop (for the CLI and tests)."""
    return asyncio.run(
        probe_snmp_many(
            targets,
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
            if_index_cache=if_index_cache,
            on_outcome=on_outcome,
            stats=stats,
            counter32_agents=counter32_agents,
            native=native,
        )
    )
