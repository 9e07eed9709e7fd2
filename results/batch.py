"""Turn one round's outcomes into what is written: COPY text for every table, and the summary.

A ``RoundBatch`` is self-contained (plain strings in PostgreSQL's COPY text format), so the same
object is written to the database or, when the database is unreachable, saved to the spool
and written later unchanged. While a batch is being built, ``BatchParts`` hands each finished
part to a writer that is already writing the earlier ones (results.store.write_parts), so the
database upserts the sites' state while the result rows are still being made.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from queue import SimpleQueue
from threading import Lock

import numpy as np

from probes.model import HttpOutcome, SnmpOutcome
from results.rates import CounterArrays, RateStatus, compute_rates
from results.status import STATE_CODES, Verdict, http_verdict, site_states, snmp_verdict

SNMP_COLUMNS = (
    "round_id, site_id, ts, kind, ok, state, latency_ms, error, error_detail, if_index, "
    "sys_uptime, in_octets, out_octets, counter_bits, oper_status, high_speed_mbps, in_bps, "
    "out_bps"
)
HTTP_COLUMNS = (
    "round_id, site_id, ts, kind, ok, state, latency_ms, error, error_detail, status_code, "
    "connect_ms, ttfb_ms, total_ms, tls_days_left, keyword_found, throughput_mbps, bytes_read"
)
STATUS_COLUMNS = (
    "site_id, state, ts, latency_ms, in_bps, out_bps, rates_at, snmp_ok, snmp_error, http_ok, "
    "http_error, http_status, oper_status, tls_days_left, last_error"
)
COUNTER_COLUMNS = "site_id, ts, sys_uptime, in_octets, out_octets, counter_bits, if_index"
REBOOT_COLUMNS = "site_id, detected_at, round_id, reason, prev_uptime, new_uptime"

NULL = "\\N"
REBOOT_CODES = frozenset({int(RateStatus.UPTIME_DECREASED), int(RateStatus.COUNTER_DECREASED)})


def esc(value: str | None) -> str:
    """``value`` as a COPY text field (NULL for None; backslash, tab and newlines escaped)."""
    if value is None:
        return NULL
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def num(value: float | int | None) -> str:
    """A number as a COPY field (NULL for None or NaN)."""
    if value is None:
        return NULL
    if isinstance(value, float) and math.isnan(value):
        return NULL
    return repr(value) if isinstance(value, float) else str(value)


def flag(value: bool | None) -> str:
    """A boolean as a COPY field."""
    return NULL if value is None else ("t" if value else "f")


@dataclass
class RoundRecord:
    """The ``probe_rounds`` row of a round."""

    id: str
    started_at: str
    finished_at: str
    kinds: list[str]
    sites: int
    snmp_probes: int = 0
    http_probes: int = 0
    up: int = 0
    degraded: int = 0
    down: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    probes_per_s: float | None = None
    rates_computed: int = 0
    reboots: int = 0
    bogus_rates: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class RoundBatch:
    """Everything one round writes, as COPY text; serialisable for the spool."""

    round: RoundRecord
    first_day: str
    last_day: str
    snmp_rows: str = ""
    http_rows: str = ""
    status_rows: str = ""
    counter_rows: str = ""
    reboot_rows: str = ""

    def to_bytes(self) -> bytes:
        """Gzipped JSON of the batch (the spool's file format)."""
        return gzip.compress(json.dumps(asdict(self)).encode(), compresslevel=1)

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundBatch:
        """Read what ``to_bytes`` wrote."""
        raw = json.loads(gzip.decompress(data))
        record = RoundRecord(**raw.pop("round"))
        return cls(round=record, **raw)

    @property
    def days(self) -> tuple[date, date]:
        """First and last UTC day of the results (for partitions)."""
        return date.fromisoformat(self.first_day), date.fromisoformat(self.last_day)


ROW_PARTS = ("counter_rows", "reboot_rows", "status_rows", "snmp_rows", "http_rows")
"""The row parts of a chunk, in the order they are finished and written: the upserts, which
cost the database most, come before the results, which cost the builder most."""
PART_NAMES = ("head", *ROW_PARTS, "round")
"""Every part of a one-chunk batch, in the order it is handed over."""


class ChunkParts:
    """The row parts of one chunk of a batch (a set of sites), each a future."""

    def __init__(self) -> None:
        self._parts: dict[str, Future[str]] = {name: Future() for name in ROW_PARTS}

    def rows(self, name: str) -> str:
        """The COPY text part ``name``, once it has been given."""
        return self._parts[name].result()


class BatchParts:
    """The parts of one batch, each handed over as soon as it is finished.

    A batch is its head, then one or more chunks of row parts (``ROW_PARTS`` each, in order:
    giving ``counter_rows`` again starts the next chunk), then its ``round`` record. A round
    whose sites finish at different times hands over the chunk of those already done while the
    rest are still being probed. ``head``, ``chunks`` and ``record`` block until their part is
    there; after ``fail`` every part not yet given raises that error instead, so a writer
    waiting on a batch that will never be finished stops. ``give`` and ``fail`` may be called
    from different threads.
    """

    def __init__(self) -> None:
        self._head: Future[object] = Future()
        self._record: Future[object] = Future()
        self._chunks: SimpleQueue[ChunkParts | BaseException | None] = SimpleQueue()
        self._open: ChunkParts | None = None
        self._next = 0  # index in ROW_PARTS of the open chunk's next part
        self._lock = Lock()

    @classmethod
    def of(cls, batch: RoundBatch) -> BatchParts:
        """The parts of a finished batch, all there at once (one chunk)."""
        parts = cls()
        parts.give("head", (batch.round.id, batch.first_day, batch.last_day))
        for name in ROW_PARTS:
            parts.give(name, getattr(batch, name))
        parts.give("round", batch.round)
        return parts

    def give(self, name: str, value: object) -> None:
        """Hand over the part ``name``; row parts must come in ``ROW_PARTS`` order."""
        with self._lock:
            self._give(name, value)

    def _give(self, name: str, value: object) -> None:
        if name == "head":
            self._head.set_result(value)
        elif name == "round":
            if self._open is not None:
                raise ValueError(f"the round came before the chunk's {ROW_PARTS[self._next]}")
            self._chunks.put(None)
            self._record.set_result(value)
        else:
            if self._open is None:
                self._open = ChunkParts()
                self._next = 0
                self._chunks.put(self._open)
            if name != ROW_PARTS[self._next]:
                raise ValueError(f"part {name!r} given where {ROW_PARTS[self._next]!r} was due")
            assert isinstance(value, str)
            self._open._parts[name].set_result(value)
            self._next += 1
            if self._next == len(ROW_PARTS):
                self._open = None

    def fail(self, error: BaseException) -> None:
        """Make every part not yet given raise ``error``."""
        with self._lock:
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        for part in (self._head, self._record):
            if not part.done():
                part.set_exception(error)
        if self._open is not None:
            for future in self._open._parts.values():
                if not future.done():
                    future.set_exception(error)
            self._open = None
        self._chunks.put(error)

    def chunks(self) -> Iterator[ChunkParts]:
        """The chunks, each as soon as its first part is given, until the round is given."""
        while True:
            item = self._chunks.get()
            if item is None:
                self._chunks.put(None)  # a later reader sees the end too
                return
            if isinstance(item, BaseException):
                self._chunks.put(item)
                raise item
            yield item

    def head(self) -> tuple[str, date, date]:
        """The round's id and the first and last UTC day of its results (for partitions)."""
        head = self._head.result()
        assert isinstance(head, tuple)
        round_id, first, last = head
        return str(round_id), date.fromisoformat(str(first)), date.fromisoformat(str(last))

    def record(self) -> RoundRecord:
        """The ``probe_rounds`` row, the last part to be finished."""
        value = self._record.result()
        assert isinstance(value, RoundRecord)
        return value


def _error_text(error: object, detail: str | None) -> str | None:
    if error is None:
        return None
    return f"{error}: {detail}" if detail else str(error)


def _f(value: float | None) -> str:
    return NULL if value is None else repr(value)


def _i(value: int | None) -> str:
    return NULL if value is None else str(value)


@dataclass
class ChunkTotals:
    """What the summary of a round needs from each chunk of its sites (they add up)."""

    sites: int = 0
    snmp_probes: int = 0
    http_probes: int = 0
    up: int = 0
    degraded: int = 0
    down: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rate_statuses: Counter[int] = field(default_factory=Counter)
    first_ts: datetime | None = None
    last_ts: datetime | None = None

    def add(self, other: ChunkTotals) -> None:
        """Add ``other`` (a chunk of other sites) to these totals."""
        for name in ("sites", "snmp_probes", "http_probes", "up", "degraded", "down"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.rate_statuses.update(other.rate_statuses)
        stamps = [t for t in (self.first_ts, self.last_ts, other.first_ts, other.last_ts) if t]
        if stamps:
            self.first_ts, self.last_ts = min(stamps), max(stamps)

    def days(self, fallback: datetime) -> tuple[str, str]:
        """First and last UTC day of the results (``fallback``'s day when there are none)."""
        if self.first_ts is None or self.last_ts is None:
            day = fallback.astimezone(UTC).date().isoformat()
            return day, day
        return (
            self.first_ts.astimezone(UTC).date().isoformat(),
            self.last_ts.astimezone(UTC).date().isoformat(),
        )


@dataclass
class ChunkRows:
    """The COPY text of one chunk of a round's sites (``ROW_PARTS``)."""

    counter_rows: str = ""
    reboot_rows: str = ""
    status_rows: str = ""
    snmp_rows: str = ""
    http_rows: str = ""

    def add(self, other: ChunkRows) -> None:
        """Append ``other``'s rows to these."""
        for name in ROW_PARTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def build_round_batch(
    *,
    round_id: uuid.UUID,
    started_at: datetime,
    finished_at: datetime,
    kinds: Sequence[str],
    site_ids: Sequence[int],
    snmp: Sequence[tuple[int, SnmpOutcome]],
    http: Sequence[tuple[int, HttpOutcome]],
    previous_counters: CounterArrays,
    probe_seconds: float,
    parts: BatchParts | None = None,
) -> RoundBatch:
    """Build the batch of a round, all its sites as one chunk.

    ``snmp``/``http`` pair each outcome with its site's position in ``site_ids``;
    ``previous_counters`` is aligned with ``snmp`` (the stored counter state of each site).
    With ``parts``, each part is handed over there as soon as it is finished (in
    ``PART_NAMES`` order); a caller that hands ``parts`` to a writer fails them if this raises.
    """
    rid = str(round_id)
    first_ts, last_ts = stamp_range(snmp, http)
    first_day, last_day = ChunkTotals(first_ts=first_ts, last_ts=last_ts).days(finished_at)
    if parts is not None:
        parts.give("head", (rid, first_day, last_day))
    rows, totals = build_chunk(
        round_id=rid,
        site_ids=site_ids,
        snmp=snmp,
        http=http,
        previous_counters=previous_counters,
        parts=parts,
    )
    record = round_record(
        totals,
        round_id=rid,
        started_at=started_at,
        finished_at=finished_at,
        kinds=kinds,
        probe_seconds=probe_seconds,
    )
    if parts is not None:
        parts.give("round", record)
    return RoundBatch(round=record, first_day=first_day, last_day=last_day, **vars(rows))


def stamp_range(
    snmp: Sequence[tuple[int, SnmpOutcome]], http: Sequence[tuple[int, HttpOutcome]]
) -> tuple[datetime | None, datetime | None]:
    """The earliest and latest time of these outcomes (None, None when there are none)."""
    stamps = [o.ts for _, o in snmp] + [h.ts for _, h in http]
    return (min(stamps), max(stamps)) if stamps else (None, None)


def round_record(
    totals: ChunkTotals,
    *,
    round_id: str,
    started_at: datetime,
    finished_at: datetime,
    kinds: Sequence[str],
    probe_seconds: float,
) -> RoundRecord:
    """The ``probe_rounds`` row of a round whose chunks add up to ``totals``."""
    p50 = p95 = None
    if totals.latencies:
        p50, p95 = (float(x) for x in np.percentile(np.asarray(totals.latencies), [50, 95]))
    probes = totals.snmp_probes + totals.http_probes
    statuses = totals.rate_statuses
    return RoundRecord(
        id=round_id,
        started_at=started_at.isoformat(),
        finished_at=finished_at.isoformat(),
        kinds=sorted(kinds),
        sites=totals.sites,
        snmp_probes=totals.snmp_probes,
        http_probes=totals.http_probes,
        up=totals.up,
        degraded=totals.degraded,
        down=totals.down,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        probes_per_s=probes / probe_seconds if probe_seconds > 0 else None,
        rates_computed=statuses.get(int(RateStatus.OK), 0),
        reboots=sum(statuses.get(c, 0) for c in REBOOT_CODES),
        bogus_rates=statuses.get(int(RateStatus.BOGUS), 0),
        errors=dict(totals.errors.most_common()),
    )


def build_chunk(
    *,
    round_id: str,
    site_ids: Sequence[int],
    snmp: Sequence[tuple[int, SnmpOutcome]],
    http: Sequence[tuple[int, HttpOutcome]],
    previous_counters: CounterArrays,
    parts: BatchParts | None = None,
) -> tuple[ChunkRows, ChunkTotals]:
    """The rows and totals of the sites that ``snmp`` and ``http`` have outcomes for.

    ``snmp``/``http`` pair each outcome with its site's position in ``site_ids``, and hold
    every outcome of those sites (a site's state needs both); ``previous_counters`` is aligned
    with ``snmp``. Sites of ``site_ids`` with no outcome here are left out, so the sites of a
    round can be built in chunks as their probes end. Loops here touch each outcome once with
    plain Python values (numpy scalars and enum attribute lookups are 10x dearer); the
    per-site logic runs on whole arrays. With ``parts``, each row part is handed over there as
    soon as it is finished (``ROW_PARTS`` order).
    """
    n = len(site_ids)
    rid = round_id
    none = Verdict.NONE
    snmp_v = [0] * n
    http_v = [0] * n
    snmp_of = [-1] * n
    http_of = [-1] * n
    for k, (pos, o) in enumerate(snmp):
        snmp_v[pos] = snmp_verdict(o)
        snmp_of[pos] = k
    for k, (pos, h) in enumerate(http):
        http_v[pos] = http_verdict(h)
        http_of[pos] = k
    state_codes = site_states(np.array(snmp_v, dtype=np.int8), np.array(http_v, dtype=np.int8))
    states = [STATE_CODES[c] for c in state_codes.tolist()]

    # Rates for successful polls with counters, all sites at once.
    polled = [
        k for k, (_, o) in enumerate(snmp) if o.ok and o.in_octets is not None and o.counter_bits
    ]
    outs = [snmp[k][1] for k in polled]
    m = len(polled)
    cur = CounterArrays(
        present=np.ones(m, dtype=np.bool_),
        ts=np.array([o.ts.timestamp() for o in outs], dtype=np.float64),
        sys_uptime=np.array(
            [-1 if o.sys_uptime is None else o.sys_uptime for o in outs], dtype=np.int64
        ),
        in_octets=np.array([o.in_octets for o in outs], dtype=np.uint64),
        out_octets=np.array([o.out_octets or 0 for o in outs], dtype=np.uint64),
        bits=np.array([o.counter_bits for o in outs], dtype=np.int8),
        if_index=np.array([-1 if o.if_index is None else o.if_index for o in outs], dtype=np.int64),
        speed_mbps=np.array([float(o.high_speed_mbps or 0) for o in outs], dtype=np.float64),
    )
    prev = previous_counters.take(polled)
    rates = compute_rates(prev, cur)
    rate_in: list[float | None] = [None] * len(snmp)
    rate_out: list[float | None] = [None] * len(snmp)
    for k, rin, rout in zip(polled, rates.in_bps.tolist(), rates.out_bps.tolist(), strict=True):
        if rin == rin:  # not NaN
            rate_in[k], rate_out[k] = rin, rout
    rate_status = rates.status.tolist()
    status_counts = Counter(rate_status)

    snmp_ts = [o.ts.isoformat() for _, o in snmp]
    http_ts = [h.ts.isoformat() for _, h in http]

    counter_lines: list[str] = []
    reboot_lines: list[str] = []
    prev_uptime = prev.sys_uptime.tolist()
    for j, k in enumerate(polled):
        pos, o = snmp[k]
        counter_lines.append(
            f"{site_ids[pos]}\t{snmp_ts[k]}\t{_i(o.sys_uptime)}\t{o.in_octets}\t"
            f"{o.out_octets}\t{o.counter_bits}\t{_i(o.if_index)}\n"
        )
        if rate_status[j] in REBOOT_CODES:
            before = prev_uptime[j]
            reason = RateStatus(rate_status[j]).reboot_reason
            reboot_lines.append(
                f"{site_ids[pos]}\t{snmp_ts[k]}\t{rid}\t{reason}\t"
                f"{_i(before if before >= 0 else None)}\t{_i(o.sys_uptime)}\n"
            )

    counter_rows = "".join(counter_lines)
    if parts is not None:
        parts.give("counter_rows", counter_rows)
    reboot_rows = "".join(reboot_lines)
    if parts is not None:
        parts.give("reboot_rows", reboot_rows)

    status_lines: list[str] = []
    for pos in range(n):
        ks, kh = snmp_of[pos], http_of[pos]
        so: SnmpOutcome | None = snmp[ks][1] if ks >= 0 else None
        ho: HttpOutcome | None = http[kh][1] if kh >= 0 else None
        if so is None:
            if ho is None:
                continue
            ts = http_ts[kh]
        else:
            ts = snmp_ts[ks] if ho is None or so.ts >= ho.ts else http_ts[kh]
        latency = None
        if so is not None and so.ok:
            latency = so.latency_ms
        elif ho is not None:
            latency = ho.ttfb_ms
        in_bps = out_bps = None
        rates_at = NULL
        if so is not None and rate_in[ks] is not None:
            in_bps, out_bps = rate_in[ks], rate_out[ks]
            rates_at = snmp_ts[ks]
        snmp_err = None
        if so is not None:
            if so.ok:
                if so.oper_status is not None and so.oper_status != 1:
                    snmp_err = f"WAN interface ifOperStatus {so.oper_status} (not up)"
            else:
                snmp_err = _error_text(so.error, so.error_detail)
        http_err = None if ho is None or ho.ok else _error_text(ho.error, ho.error_detail)
        if snmp_err is None and http_err is None:
            last_error = NULL
        else:
            problems = [f"snmp {snmp_err}"] if snmp_err else []
            if http_err:
                problems.append(f"http {http_err}")
            last_error = esc("; ".join(problems))
        status_lines.append(
            f"{site_ids[pos]}\t{states[pos] or NULL}\t{ts}\t{_f(latency)}\t"
            f"{_f(in_bps)}\t{_f(out_bps)}\t{rates_at}\t"
            f"{NULL if so is None else ('t' if so.ok else 'f')}\t{esc(snmp_err)}\t"
            f"{NULL if ho is None else ('t' if ho.ok else 'f')}\t{esc(http_err)}\t"
            f"{NULL if ho is None else _i(ho.status_code)}\t"
            f"{NULL if so is None else _i(so.oper_status)}\t"
            f"{NULL if ho is None else _f(ho.tls_days_left)}\t{last_error}\n"
        )

    status_rows = "".join(status_lines)
    if parts is not None:
        parts.give("status_rows", status_rows)

    snmp_lines: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    for k, (pos, o) in enumerate(snmp):
        if snmp_v[pos] == none:
            errors[f"snmp {o.error}"] += 1
            continue
        if o.ok and o.error_detail is None:
            # The common case has no text field, so every None can become NULL in one pass.
            if o.latency_ms is not None:
                latencies.append(o.latency_ms)
            snmp_lines.append(
                f"{rid}\t{site_ids[pos]}\t{snmp_ts[k]}\tsnmp\tt\t{states[pos]}\t"
                f"{o.latency_ms}\tNone\tNone\t{o.if_index}\t{o.sys_uptime}\t{o.in_octets}\t"
                f"{o.out_octets}\t{o.counter_bits}\t{o.oper_status}\t{o.high_speed_mbps}\t"
                f"{rate_in[k]}\t{rate_out[k]}\n".replace("None", NULL)
            )
            continue
        if o.error is not None:
            errors[f"snmp {o.error}"] += 1
        snmp_lines.append(
            f"{rid}\t{site_ids[pos]}\t{snmp_ts[k]}\tsnmp\t{'t' if o.ok else 'f'}\t"
            f"{states[pos]}\t{_f(o.latency_ms)}\t{esc(o.error)}\t"
            f"{esc(o.error_detail)}\t{_i(o.if_index)}\t{_i(o.sys_uptime)}\t"
            f"{_i(o.in_octets)}\t{_i(o.out_octets)}\t{_i(o.counter_bits)}\t"
            f"{_i(o.oper_status)}\t{_i(o.high_speed_mbps)}\t{_f(rate_in[k])}\t"
            f"{_f(rate_out[k])}\n"
        )
    snmp_rows = "".join(snmp_lines)
    if parts is not None:
        parts.give("snmp_rows", snmp_rows)
    http_lines: list[str] = []
    for k, (pos, h) in enumerate(http):
        if http_v[pos] == none:
            errors[f"http {h.error}"] += 1
            continue
        if h.ok and h.error_detail is None:
            if h.latency_ms is not None:
                latencies.append(h.latency_ms)
            kw = NULL if h.keyword_found is None else ("t" if h.keyword_found else "f")
            http_lines.append(
                f"{rid}\t{site_ids[pos]}\t{http_ts[k]}\thttp\tt\t{states[pos]}\t"
                f"{h.latency_ms}\tNone\tNone\t{h.status_code}\t{h.connect_ms}\t{h.ttfb_ms}\t"
                f"{h.total_ms}\t{h.tls_days_left}\t{kw}\t{h.throughput_mbps}\t"
                f"{h.bytes_read}\n".replace("None", NULL)
            )
            continue
        if h.ok:
            if h.latency_ms is not None:
                latencies.append(h.latency_ms)
        elif h.error is not None:
            errors[f"http {h.error}"] += 1
        http_lines.append(
            f"{rid}\t{site_ids[pos]}\t{http_ts[k]}\thttp\t{'t' if h.ok else 'f'}\t"
            f"{states[pos]}\t{_f(h.latency_ms)}\t{esc(h.error)}\t"
            f"{esc(h.error_detail)}\t{_i(h.status_code)}\t{_f(h.connect_ms)}\t"
            f"{_f(h.ttfb_ms)}\t{_f(h.total_ms)}\t{_f(h.tls_days_left)}\t"
            f"{flag(h.keyword_found)}\t{_f(h.throughput_mbps)}\t{_i(h.bytes_read)}\n"
        )
    http_rows = "".join(http_lines)
    if parts is not None:
        parts.give("http_rows", http_rows)

    counts = np.bincount(state_codes, minlength=4).tolist()
    first_ts, last_ts = stamp_range(snmp, http)
    totals = ChunkTotals(
        sites=sum(1 for a, b in zip(snmp_of, http_of, strict=True) if a >= 0 or b >= 0),
        snmp_probes=len(snmp),
        http_probes=len(http),
        up=counts[1],
        degraded=counts[2],
        down=counts[3],
        latencies=latencies,
        errors=errors,
        rate_statuses=status_counts,
        first_ts=first_ts,
        last_ts=last_ts,
    )
    rows = ChunkRows(counter_rows, reboot_rows, status_rows, snmp_rows, http_rows)
    return rows, totals
