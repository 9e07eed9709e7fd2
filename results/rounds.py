"""One probe round: load the targets, probe SNMP and HTTP at once, compute, write or spool.

``run_round`` is what ``conectado probe run`` and the scheduler call. Sites are selected by
one SQL query (status ``active`` or ``installed``, with a management address or a probe URL),
narrowed by keys, ids, a SQL predicate on ``sites`` (alias ``s``) and a limit. The stored
counter state comes with the targets in the same query. Both probe engines run in one event
loop; states and rates are computed on whole arrays, and the round is written in one
transaction (``results.store``), or spooled when the database is unreachable
(``results.spool``). The building and writing overlap the probing: every few seconds while
the engines run (every second once one has finished), the sites whose probes have all ended
are built in a thread and a writer thread writes them; the rest are built when the probing
ends (``_Assembly``). Within a chunk the writer writes each part (the state upserts first,
then the results) while the next is being made. The ``early build`` phase is the time spent
building chunks while probing, ``compute`` the building after the probing, ``write`` what is
left of the writing after that.
Spooled rounds are flushed before a new round loads its targets, so rates are always
computed against the latest stored counters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from asyncio import ALL_COMPLETED, FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urljoin

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from core.collector import collector_paused
from core.errors import DatabaseUnavailable, InvalidInput
from core.progress import NullProgress, Progress, ProgressTask
from core.settings import Settings
from probes.http import HttpProbeProcess, probe_http_many, probe_http_many_in_process
from probes.model import HttpOutcome, HttpTarget, SnmpOutcome, SnmpTarget, V3Credentials
from probes.snmp import SnmpStats, probe_snmp_many
from results.batch import BatchParts, ChunkRows, ChunkTotals, RoundBatch, build_chunk, round_record
from results.current import PROBED_STATUSES
from results.rates import CounterArrays
from results.spool import FlushReport, flush_spool, spool_round
from results.store import is_connection_error, write_parts

KINDS = frozenset({"snmp", "http"})
# A site whose last answer took this long (or that failed) starts in the slow lane.
SLOW_MS = 500.0
# While one engine still runs after the other ended, the sites whose probes have all ended
# since are built and handed to the writer this often (a child process's HTTP outcomes may
# only start to arrive after the SNMP probes are over, on a slow or busy host).
EARLY_BUILD_EVERY_S = 1.0
# While both engines run, less often: the build shares the event loop's process (and its GIL)
# with the SNMP engine, and the engines often end together, when all that was not written
# would have to be (measured on the 101,322-site lab: rounds 15.0 s against 16.3 s).
EARLY_BUILD_BOTH_RUNNING_S = 3.0
_T = TypeVar("_T")

TARGETS_SQL = """
SELECT s.id, s.site_key, host(s.mgmt_ip) AS ip, s.snmp_version, s.snmp_port,
       s.wan_if_index, s.wan_if_name, s.http_url,
       k.snmp_community, k.v3_user, k.v3_auth_proto, k.v3_auth_key, k.v3_priv_proto,
       k.v3_priv_key,
       extract(epoch FROM c.ts)::float8 AS c_ts, c.sys_uptime AS c_up, c.in_octets::text AS c_in,
       c.out_octets::text AS c_out, c.counter_bits AS c_bits, c.if_index AS c_if,
       coalesce(st.snmp_ok IS FALSE OR st.latency_ms >= :slow_ms, false) AS snmp_slow,
       coalesce(st.http_ok IS FALSE OR st.latency_ms >= :slow_ms, false) AS http_slow
FROM sites s
LEFT JOIN site_secrets k ON k.site_id = s.id
LEFT JOIN counter_state c ON c.site_id = s.id
LEFT JOIN site_status st ON st.site_id = s.id
WHERE s.status IN ('active', 'installed')
  AND (s.mgmt_ip IS NOT NULL OR s.http_url IS NOT NULL)
"""


@dataclass
class RoundSummary:
    """What a round did (the CLI prints it; the scheduler logs it)."""

    round_id: str
    started_at: datetime
    finished_at: datetime
    sites: int
    snmp_probes: int
    http_probes: int
    up: int
    degraded: int
    down: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    probes_per_s: float | None
    rates_computed: int
    reboots: int
    bogus_rates: int
    errors: dict[str, int]
    written: bool
    spooled: bool
    lost: bool
    already_written: bool = False
    flushed: FlushReport | None = None
    phases: dict[str, float] = field(default_factory=dict)
    snmp_dropped_datagrams: int = 0


@dataclass
class RoundTargets:
    """The sites of a round and their probe targets."""

    site_ids: list[int]
    site_keys: list[str]
    snmp: list[tuple[int, SnmpTarget]]
    http: list[tuple[int, HttpTarget]]
    previous: CounterArrays  # aligned with ``snmp``
    if_index_cache: dict[tuple[int, str], int]
    counter32_agents: set[tuple[str, int]]


def _http_url(url: str, settings: Settings) -> str:
    path = settings.http_throughput_path
    if settings.http_throughput_bytes and path:
        return urljoin(url, path.replace("{n}", str(settings.http_throughput_bytes)))
    return url


def load_targets(
    engine: Engine,
    settings: Settings,
    *,
    kinds: Collection[str] = KINDS,
    site_keys: Sequence[str] | None = None,
    site_ids: Sequence[int] | None = None,
    sites_where: str | None = None,
    sites_params: dict[str, Any] | None = None,
    limit: int | None = None,
) -> RoundTargets:
    """Load the round's sites, credentials and stored counters in one query.

    ``sites_where`` is trusted SQL (a predicate on ``sites`` as ``s``, with ``:name``
    parameters from ``sites_params``), for the scheduler's batches; never pass user text.
    Raises InvalidInput naming any ``site_keys`` that are unknown or not probed.
    """
    sql = TARGETS_SQL
    params: dict[str, Any] = dict(sites_params or {})
    params["slow_ms"] = SLOW_MS
    if site_keys:
        sql += " AND s.site_key = ANY(:site_keys)"
        params["site_keys"] = list(site_keys)
    if site_ids is not None:
        sql += " AND s.id = ANY(:site_ids)"
        params["site_ids"] = [int(i) for i in site_ids]
    if sites_where:
        sql += f" AND ({sites_where})"
    if limit is None:
        # The expected-slow start first, so their waits overlap the bulk instead of trailing
        # after it; they are flagged ``expect_slow`` too, so they cannot take every slot
        # (probes.lanes). Among them, sites that answered slowly go before those that failed:
        # a slow site that goes down this round holds its slot for the whole timeout chain,
        # and one started behind the dead ends the round that much later (lab: SNMP phase
        # 9.8 or 12.3 s by luck, now 10.0 s). Neither order wins every mix (simulated with
        # bench/lane_order.py): slow-first costs up to 4.5 s when no slow site fails, dead-first
        # as much when a few do, and with many flapping or rain-faded links a few always do.
        # Within a group, slower answers first and sites with no latency last. Group and
        # latency are one float key, group × 1e6 − latency: timeouts keep a latency below
        # 1.2e5 ms, a missing one counts as −4e5, and the key's resolution (below 1e-9 ms)
        # keeps any two different latencies above 4 µs in order. The query of 95,000 sites
        # took 0.42 s so, against 0.79 s with the group and the latency as two sort keys.
        sql += (
            " ORDER BY CASE WHEN st.latency_ms >= :slow_ms THEN 0 WHEN st.state = 'down' THEN 1"
            " WHEN st.snmp_ok IS FALSE OR st.http_ok IS FALSE THEN 2 ELSE 3 END * 1e6::float8"
            " - coalesce(st.latency_ms, -4e5::float8), s.id"
        )
    else:
        sql += " ORDER BY s.id LIMIT :limit"  # --limit N: the first N sites, predictably
        params["limit"] = int(limit)
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
        if site_keys:
            _check_keys(conn, site_keys, {r.site_key for r in rows})

    out = RoundTargets([], [], [], [], CounterArrays.empty(0), {}, set())
    want_snmp, want_http = "snmp" in kinds, "http" in kinds
    keyword = settings.http_expect_keyword
    throughput = settings.http_throughput_bytes or None
    # Previous counters as columns (filled per SNMP target; -1 / 0 mark "none").
    p_present: list[bool] = []
    p_ts: list[float] = []
    p_up: list[int] = []
    p_in: list[int] = []
    p_out: list[int] = []
    p_bits: list[int] = []
    p_if: list[int] = []
    for (
        site_id, site_key, ip, version, snmp_port, if_index, if_name, http_url,
        community, v3_user, v3_auth_proto, v3_auth_key, v3_priv_proto, v3_priv_key,
        c_ts, c_up, c_in, c_out, c_bits, c_if, snmp_slow, http_slow,
    ) in rows:  # fmt: skip
        probe_snmp = want_snmp and ip is not None and version is not None
        probe_http = want_http and http_url is not None
        if not (probe_snmp or probe_http):
            continue
        pos = len(out.site_ids)
        out.site_ids.append(site_id)
        out.site_keys.append(site_key)
        if probe_snmp:
            v3 = None
            if version == "3" and v3_user:
                v3 = V3Credentials(
                    user=v3_user,
                    auth_proto=v3_auth_proto or "SHA",
                    auth_key=v3_auth_key,
                    priv_proto=v3_priv_proto or "AES",
                    priv_key=v3_priv_key,
                )
            out.snmp.append(
                (
                    pos,
                    SnmpTarget(
                        site_id,
                        ip,
                        snmp_port,
                        version,
                        community,
                        v3,
                        if_index,
                        if_name if if_index is None else None,
                        snmp_slow,
                    ),
                )
            )
            known = c_ts is not None
            p_present.append(known)
            p_ts.append(float(c_ts) if known else 0.0)
            p_up.append(-1 if c_up is None else c_up)
            p_in.append(int(c_in) if known else 0)
            p_out.append(int(c_out) if known else 0)
            p_bits.append(c_bits or 0)
            p_if.append(-1 if c_if is None else c_if)
            if known:
                if if_index is None and if_name and c_if is not None:
                    out.if_index_cache[(site_id, if_name)] = c_if
                if c_bits == 32:
                    out.counter32_agents.add((ip, snmp_port))
        if probe_http:
            out.http.append(
                (
                    pos,
                    HttpTarget(
                        site_id,
                        _http_url(http_url, settings),
                        "GET",
                        keyword,
                        throughput,
                        http_slow,
                    ),
                )
            )
    out.previous = CounterArrays(
        present=np.array(p_present, dtype=np.bool_),
        ts=np.array(p_ts, dtype=np.float64),
        sys_uptime=np.array(p_up, dtype=np.int64),
        in_octets=np.array(p_in, dtype=np.uint64),
        out_octets=np.array(p_out, dtype=np.uint64),
        bits=np.array(p_bits, dtype=np.int8),
        if_index=np.array(p_if, dtype=np.int64),
        speed_mbps=np.zeros(len(p_ts), dtype=np.float64),
    )
    return out


def _check_keys(conn: Any, keys: Sequence[str], found: set[str]) -> None:
    missing = [k for k in keys if k not in found]
    if not missing:
        return
    known = {
        r.site_key: r
        for r in conn.execute(
            text(
                "SELECT site_key, status, mgmt_ip IS NOT NULL AS has_ip, "
                "http_url IS NOT NULL AS has_url FROM sites WHERE site_key = ANY(:k)"
            ),
            {"k": missing},
        )
    }
    problems = []
    for key in missing:
        row = known.get(key)
        if row is None:
            problems.append(f"{key}: no such site")
        elif row.status not in PROBED_STATUSES:
            problems.append(f"{key}: status is {row.status!r}; only active/installed are probed")
        else:
            problems.append(f"{key}: has neither mgmt_ip nor http_url to probe")
    raise InvalidInput("Cannot probe: " + "; ".join(problems) + ".")


class _Counted:
    """Advances a progress task in steps (a callback per outcome is too fine for a bar)."""

    def __init__(self, task: ProgressTask, step: int = 500) -> None:
        self.task = task
        self.step = step
        self.pending = 0

    def __call__(self, _: object) -> None:
        self.pending += 1
        if self.pending >= self.step:
            self.task.advance(self.pending)
            self.pending = 0

    def flush(self) -> None:
        if self.pending:
            self.task.advance(self.pending)
            self.pending = 0


async def _timed(job: Awaitable[_T], name: str, durations: dict[str, float] | None) -> _T:
    """Await ``job`` and record how long it took under ``name`` in ``durations``."""
    t = time.perf_counter()
    out = await job
    if durations is not None:
        durations[name] = time.perf_counter() - t
    return out


async def probe_targets(
    targets: RoundTargets,
    settings: Settings,
    *,
    progress_task: ProgressTask | None = None,
    snmp_stats: SnmpStats | None = None,
    durations: dict[str, float] | None = None,
    on_snmp_outcome: Callable[[SnmpOutcome], None] | None = None,
    on_http_outcome: Callable[[HttpOutcome], None] | None = None,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
    http_process: HttpProbeProcess | None = None,
) -> tuple[list[SnmpOutcome], list[HttpOutcome]]:
    """Run the SNMP and HTTP probes of a round concurrently in the running loop.

    When the HTTP probes run in a child process (``http_process_min``), ``http_process`` is
    one started ahead (it is ended either way when this returns).

    When ``durations`` is given, the seconds each engine took are stored in it under
    ``probe snmp`` and ``probe http`` (the round ends when the slower one does).
    ``on_snmp_outcome`` and ``on_http_outcome`` see each outcome as it is ready (HTTP ones
    from a child process in batches, a few times a second). ``meanwhile`` is awaited every
    ``EARLY_BUILD_BOTH_RUNNING_S`` while both engines run, and every ``EARLY_BUILD_EVERY_S``
    once one has finished, until the other is done too (the probing goes on meanwhile); this
    returns when both engines and it are done.
    """
    counted = _Counted(progress_task) if progress_task is not None else None
    on_snmp = _both(on_snmp_outcome, counted)
    snmp_job = probe_snmp_many(
        [t for _, t in targets.snmp],
        timeout=settings.snmp_timeout,
        retries=settings.probe_retries,
        concurrency=settings.probe_concurrency,
        if_index_cache=targets.if_index_cache,
        on_outcome=on_snmp,
        stats=snmp_stats,
        counter32_agents=targets.counter32_agents,
        native=settings.snmp_native,
    )
    http_targets = [t for _, t in targets.http]
    http_options: dict[str, Any] = {
        "timeout": settings.http_timeout,
        "retries": settings.probe_retries,
        "concurrency": settings.probe_concurrency,
        "verify_tls": settings.http_verify_tls,
        "ca_file": settings.path(settings.http_ca_file) if settings.http_ca_file else None,
        "max_body_bytes": settings.http_max_body_bytes,
        "native": settings.http_native,
    }
    in_process = 0 < settings.http_process_min <= len(http_targets)
    if http_process is not None and not in_process:
        await asyncio.get_running_loop().run_in_executor(None, http_process.close)
    if in_process:
        http_job = probe_http_many_in_process(
            http_targets,
            process=http_process,
            on_progress=progress_task.advance if progress_task is not None else None,
            on_outcome=on_http_outcome,
            **http_options,
        )
    else:
        on_http = _both(on_http_outcome, counted)
        http_job = probe_http_many(http_targets, on_outcome=on_http, **http_options)
    snmp_task = asyncio.ensure_future(_timed(snmp_job, "probe snmp", durations))
    http_task = asyncio.ensure_future(_timed(http_job, "probe http", durations))
    if meanwhile is not None:
        running: set[asyncio.Future[Any]] = {snmp_task, http_task}
        while True:
            # Both running: wake at the first end too, to build at once what it completes.
            both = len(running) == 2
            done, running = await asyncio.wait(
                running,
                timeout=EARLY_BUILD_BOTH_RUNNING_S if both else EARLY_BUILD_EVERY_S,
                return_when=FIRST_COMPLETED if both else ALL_COMPLETED,
            )
            if not running or any(t.cancelled() or t.exception() for t in done):
                break
            await meanwhile()
    snmp_out, http_out = await asyncio.gather(snmp_task, http_task)
    if counted is not None:
        counted.flush()
    return snmp_out, http_out


def _both(
    first: Callable[[_T], None] | None, then: Callable[[_T], None] | None
) -> Callable[[_T], None] | None:
    """One callback calling ``first`` then ``then`` (either may be None)."""
    if first is None or then is None:
        return first or then
    a, b = first, then

    def call(value: _T) -> None:
        a(value)
        b(value)

    return call


class _Assembly:
    """Builds a round's batch in chunks and hands each to the writer as soon as it is built.

    While the engines run, the sites whose probes have all ended are built and written, off
    the event loop, every few seconds (``probe_targets``' ``meanwhile``); the rest when the
    probing is over. Each site is in
    exactly one chunk with all its outcomes, so its state is computed as in one batch. The
    writer writes every chunk in the round's one transaction (``results.store``).
    """

    def __init__(
        self,
        engine: Engine,
        targets: RoundTargets,
        round_id: uuid.UUID,
        started_at: datetime,
        parts: BatchParts,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.engine = engine
        self.targets = targets
        self.round_id = str(round_id)
        self.started_at = started_at
        self.parts = parts
        self.pool = pool
        self.writing: Future[bool] | None = None
        self.rows = ChunkRows()
        self.totals = ChunkTotals()
        self.early_seconds = 0.0
        self._snmp_of_site = {t.site_id: k for k, (_, t) in enumerate(targets.snmp)}
        self._http_of_site = {t.site_id: j for j, (_, t) in enumerate(targets.http)}
        self._snmp_seen: list[SnmpOutcome | None] = [None] * len(targets.snmp)
        self._http_seen: list[HttpOutcome | None] = [None] * len(targets.http)
        # The same as masks, and where each target's site is, to pick ended sites in numpy.
        self._snmp_in = np.zeros(len(targets.snmp), dtype=np.bool_)
        self._http_in = np.zeros(len(targets.http), dtype=np.bool_)
        self._snmp_pos = np.array([pos for pos, _ in targets.snmp], dtype=np.int64)
        self._http_pos = np.array([pos for pos, _ in targets.http], dtype=np.int64)
        self._snmp_built = np.zeros(len(targets.snmp), dtype=np.bool_)
        self._http_built = np.zeros(len(targets.http), dtype=np.bool_)

    def saw_snmp(self, outcome: SnmpOutcome) -> None:
        """Note an SNMP outcome as it is ready (called on the event loop)."""
        k = self._snmp_of_site[outcome.site_id]
        self._snmp_seen[k] = outcome
        self._snmp_in[k] = True

    def saw_http(self, outcome: HttpOutcome) -> None:
        """Note an HTTP outcome as it is ready (called on the event loop)."""
        j = self._http_of_site[outcome.site_id]
        self._http_seen[j] = outcome
        self._http_in[j] = True

    def start_writing(self) -> None:
        """Start the writer, once; its partitions cover the round's start day to today."""
        if self.writing is not None:
            return
        first = self.started_at.astimezone(UTC).date().isoformat()
        last = datetime.now(UTC).date().isoformat()
        self.parts.give("head", (self.round_id, first, last))
        self.writing = self.pool.submit(write_parts, self.engine, self.parts)

    async def build_early(self) -> None:
        """Build and hand over the sites not built yet whose every probe has ended (the others
        go on); called again as more end, each site is built once."""
        # Picked on the loop, where outcomes arrive; the build reads only the picked outcomes,
        # which never change once in, so the lists need no copy while more arrive.
        # Per site: have all its probes ended (a kind it has no target for has), and is it new?
        ended = np.ones(len(self.targets.site_ids), dtype=np.bool_)
        ended[self._snmp_pos] = self._snmp_in & ~self._snmp_built
        ended[self._http_pos] &= self._http_in & ~self._http_built
        snmp_pick = np.flatnonzero(ended[self._snmp_pos]).tolist()
        http_pick = np.flatnonzero(ended[self._http_pos]).tolist()
        if not (snmp_pick or http_pick):
            return
        t = time.perf_counter()
        self.start_writing()
        await asyncio.get_running_loop().run_in_executor(
            self.pool, self._build, snmp_pick, self._snmp_seen, http_pick, self._http_seen
        )
        self.early_seconds += time.perf_counter() - t

    def build_rest(self, snmp_out: Sequence[SnmpOutcome], http_out: Sequence[HttpOutcome]) -> None:
        """Build and hand over every site not built early (all of them if none was)."""
        self.start_writing()
        snmp_pick = np.flatnonzero(~self._snmp_built).tolist()
        http_pick = np.flatnonzero(~self._http_built).tolist()
        self._build(snmp_pick, snmp_out, http_pick, http_out)

    def _build(
        self,
        snmp_pick: list[int],
        snmp_out: Sequence[SnmpOutcome | None],
        http_pick: list[int],
        http_out: Sequence[HttpOutcome | None],
    ) -> None:
        rows, totals = build_chunk(
            round_id=self.round_id,
            site_ids=self.targets.site_ids,
            snmp=_take(self.targets.snmp, snmp_out, snmp_pick, self._snmp_built),
            http=_take(self.targets.http, http_out, http_pick, self._http_built),
            previous_counters=self.targets.previous.take(snmp_pick),
            parts=self.parts,
        )
        self.rows.add(rows)
        self.totals.add(totals)


def _take(
    targets: Sequence[tuple[int, object]],
    outcomes: Sequence[_T | None],
    picks: list[int],
    built: np.ndarray[Any, np.dtype[np.bool_]],
) -> list[tuple[int, _T]]:
    """(site position, outcome) of the picked targets, each marked built."""
    out: list[tuple[int, _T]] = []
    for i in picks:
        outcome = outcomes[i]
        assert outcome is not None, "only targets whose outcome is in are picked"
        out.append((targets[i][0], outcome))
        built[i] = True
    return out


def run_round(
    engine: Engine,
    settings: Settings,
    *,
    site_keys: Sequence[str] | None = None,
    site_ids: Sequence[int] | None = None,
    kinds: Collection[str] = KINDS,
    limit: int | None = None,
    sites_where: str | None = None,
    sites_params: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RoundSummary:
    """Probe the selected sites once and store the results (or spool them); see module doc."""
    with collector_paused():
        http_process = _http_process_ahead(
            engine,
            settings,
            kinds,
            site_keys=site_keys,
            site_ids=site_ids,
            sites_where=sites_where,
            limit=limit,
        )
        try:
            return _run_round(
                engine,
                settings,
                site_keys=site_keys,
                site_ids=site_ids,
                kinds=kinds,
                limit=limit,
                sites_where=sites_where,
                sites_params=sites_params,
                progress=progress,
                http_process=http_process,
            )
        finally:
            if http_process is not None:
                http_process.close()  # unused, or already ended by the probing


def _http_process_ahead(
    engine: Engine,
    settings: Settings,
    kinds: Collection[str],
    *,
    site_keys: Sequence[str] | None,
    site_ids: Sequence[int] | None,
    sites_where: str | None,
    limit: int | None,
) -> HttpProbeProcess | None:
    """Start the HTTP probes' child process before the round loads its sites, when the round
    will likely run them in one (``http_process_min``): its start and imports then overlap
    the load instead of delaying the first HTTP probe (about 0.5 s on the 101,322-site lab).

    Only whole-inventory rounds of an inventory that large qualify, judged by the planner's
    row estimate of ``sites`` (a catalog read); batches, key lists and small inventories
    start theirs when needed, as before. None when not started.
    """
    least = settings.http_process_min
    if "http" not in kinds or least <= 0 or site_keys or sites_where:
        return None
    if (limit is not None and limit < least) or (site_ids is not None and len(site_ids) < least):
        return None
    try:
        with engine.connect() as conn:
            estimate = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'sites'::regclass")
            ).scalar_one()
    except SQLAlchemyError:  # unreachable: the load that follows says so properly
        return None
    if estimate is None or estimate < least:
        return None
    return HttpProbeProcess().start()


def _run_round(
    engine: Engine,
    settings: Settings,
    *,
    site_keys: Sequence[str] | None,
    site_ids: Sequence[int] | None,
    kinds: Collection[str],
    limit: int | None,
    sites_where: str | None,
    sites_params: dict[str, Any] | None,
    progress: Progress | None,
    http_process: HttpProbeProcess | None,
) -> RoundSummary:
    unknown = set(kinds) - KINDS
    if unknown or not kinds:
        raise InvalidInput(
            f"--kind must be snmp, http or both (got {', '.join(sorted(kinds)) or 'nothing'})."
        )
    progress = progress or NullProgress()
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        flushed = flush_spool(engine, settings)
        targets = load_targets(
            engine,
            settings,
            kinds=kinds,
            site_keys=site_keys,
            site_ids=site_ids,
            sites_where=sites_where,
            sites_params=sites_params,
            limit=limit,
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(
                "The database is unreachable, so the sites to probe cannot be loaded; the "
                "round did not run. Check `conectado db status` or CONECTADO_DATABASE_URL.",
                detail=str(exc),
            ) from exc
        raise
    phases["load"] = time.perf_counter() - t0

    round_id = uuid.uuid4()
    started_at = datetime.now(UTC)
    total = len(targets.snmp) + len(targets.http)
    task = progress.task(f"Probing {len(targets.site_ids):,} sites", total=total)
    stats = SnmpStats()
    engines: dict[str, float] = {}
    parts = BatchParts()
    # Two threads: the writer, and the builder of the sites whose probes ended early.
    with ThreadPoolExecutor(2, thread_name_prefix="round-writer") as pool:
        assembly = _Assembly(engine, targets, round_id, started_at, parts, pool)
        both = bool(targets.snmp and targets.http)
        t1 = t2 = time.perf_counter()
        try:
            snmp_out, http_out = asyncio.run(
                probe_targets(
                    targets,
                    settings,
                    progress_task=task,
                    snmp_stats=stats,
                    durations=engines,
                    on_snmp_outcome=assembly.saw_snmp if both else None,
                    on_http_outcome=assembly.saw_http if both else None,
                    meanwhile=assembly.build_early if both else None,
                    http_process=http_process,
                )
            )
            task.finish()
            probe_seconds = time.perf_counter() - t1
            phases["probe"] = probe_seconds
            if both:  # both ran at once: which one the round waited for
                phases.update(engines)
            if assembly.early_seconds:
                phases["early build"] = assembly.early_seconds
            finished_at = datetime.now(UTC)
            t2 = time.perf_counter()
            write_task = progress.task("Writing results", total=None)
            assembly.build_rest(snmp_out, http_out)
            record = round_record(
                assembly.totals,
                round_id=str(round_id),
                started_at=started_at,
                finished_at=finished_at,
                kinds=sorted(kinds),
                probe_seconds=probe_seconds,
            )
            parts.give("round", record)
        except BaseException as exc:
            parts.fail(exc)  # the writer rolls back and stops
            raise
        finally:
            phases["compute"] = time.perf_counter() - t2
            t3 = time.perf_counter()
    # Leaving the pool waited for the writer.
    first_day, last_day = assembly.totals.days(finished_at)
    batch = RoundBatch(record, first_day, last_day, **vars(assembly.rows))
    writing = assembly.writing
    assert writing is not None

    written = spooled = lost = False
    try:
        written = writing.result()
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        spooled = spool_round(settings, batch) is not None
        lost = not spooled
    write_task.finish()
    phases["write"] = time.perf_counter() - t3
    phases["total"] = time.perf_counter() - t0
    return summarise(
        batch,
        written=written,
        spooled=spooled,
        lost=lost,
        phases=phases,
        flushed=flushed,
        snmp_dropped_datagrams=stats.dropped,
    )


def summarise(
    batch: RoundBatch,
    *,
    written: bool,
    spooled: bool,
    lost: bool,
    phases: dict[str, float],
    flushed: FlushReport | None = None,
    snmp_dropped_datagrams: int = 0,
) -> RoundSummary:
    """The RoundSummary of a batch and what became of it."""
    r = batch.round
    return RoundSummary(
        round_id=r.id,
        started_at=datetime.fromisoformat(r.started_at),
        finished_at=datetime.fromisoformat(r.finished_at),
        sites=r.sites,
        snmp_probes=r.snmp_probes,
        http_probes=r.http_probes,
        up=r.up,
        degraded=r.degraded,
        down=r.down,
        latency_p50_ms=r.latency_p50_ms,
        latency_p95_ms=r.latency_p95_ms,
        probes_per_s=r.probes_per_s,
        rates_computed=r.rates_computed,
        reboots=r.reboots,
        bogus_rates=r.bogus_rates,
        errors=r.errors,
        written=written,
        spooled=spooled,
        lost=lost,
        already_written=not (written or spooled or lost),
        flushed=flushed,
        phases=phases,
        snmp_dropped_datagrams=snmp_dropped_datagrams,
    )
