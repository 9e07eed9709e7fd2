"""Incidents: opened after K failed rounds, closed by the first success, flapping and grouping.

The state machine runs after probe batches (at most one evaluation every
``settings.incident_evaluation_gap_s``; each is recorded in ``incident_evaluation``), set-wise
over every site in one transaction (serialised by an advisory lock so two schedulers never
evaluate at once):

- a round *fails* when the site's state is not ``up`` (``down``: nothing answered, or
  ``degraded``: it answered but something is wrong) and *succeeds* when it is ``up``, as
  results/status.py defines them; ``site_status.consecutive_failures`` counts failed rounds in
  a row;
- a site with ``consecutive_failures >= settings.incident_failures`` opens an incident (cause
  ``failures``) that started at the first failed round of the streak; the first success closes it
  (``recovered``) and its duration is from that first failure to that success;
- a site with more than ``settings.flap_changes`` changes between success and failure within
  ``settings.flap_window_s`` is *flapping*: its open incident is marked flapping and is not
  closed by a success, or one incident (cause ``flapping``) is opened for it; it closes
  (``stable``) once the changes in the window fall to half the threshold and the site is up;
- when at least ``settings.municipal_outage_share`` of a municipality's probed active sites
  (at least ``settings.municipal_outage_min_sites``) are ``down``, one incident of kind
  ``municipality`` is opened instead of one per site, with its down sites (after K failed
  rounds) as members (``incident_sites``); a member recovers when it answers again; the
  incident closes when every member recovered (``recovered``) or when the share falls below
  the threshold (``outage_over``); sites still failing then get their own incidents;
- sites covered by an active maintenance window open nothing and do not count for grouping;
- incidents of sites that are no longer active/installed are closed (``site_inactive``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from core.errors import InvalidInput, NotFound
from core.settings import Settings
from results.maintenance import SITES_IN_MAINTENANCE_SQL

LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('conectado.incidents'))"
TRY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(hashtext('conectado.incidents'))"

# Snapshot of what the steps need: the sites under maintenance, the flap counts, per
# municipality how many probed active sites are down (all sites, one aggregate), and the state
# of the few sites that matter (failing, flapping, or in an open incident).
SNAPSHOT_SQL = f"""
CREATE TEMP TABLE incident_maint ON COMMIT DROP AS {SITES_IN_MAINTENANCE_SQL};

CREATE TEMP TABLE incident_flap ON COMMIT DROP AS
SELECT site_id, count(*) AS changes, min(at) AS first_at
FROM site_transitions
WHERE at > CAST(:now AS timestamptz) - make_interval(secs => :window) AND at <= :now
  AND from_state <> 'unknown' AND (from_state = 'up') <> (to_state = 'up')
GROUP BY site_id;

CREATE TEMP TABLE incident_mun ON COMMIT DROP AS
SELECT s.mun_cvegeo,
       count(*) FILTER (WHERE mt.site_id IS NULL) AS active,
       count(*) FILTER (WHERE mt.site_id IS NULL AND ss.state = 'down') AS down,
       (count(*) FILTER (WHERE mt.site_id IS NULL) >= :min_sites
        AND count(*) FILTER (WHERE mt.site_id IS NULL AND ss.state = 'down')
            >= :share * count(*) FILTER (WHERE mt.site_id IS NULL)) AS outage
FROM sites s
JOIN site_status ss ON ss.site_id = s.id
LEFT JOIN incident_maint mt ON mt.site_id = s.id
WHERE s.status IN ('active', 'installed') AND s.mun_cvegeo IS NOT NULL
  AND ss.state <> 'unknown'
GROUP BY s.mun_cvegeo;

CREATE TEMP TABLE incident_cur ON COMMIT DROP AS
WITH ids AS (
    SELECT site_id FROM site_status WHERE state IN ('down', 'degraded')
    UNION SELECT site_id FROM incidents WHERE status = 'open' AND kind = 'site'
    UNION SELECT m.site_id FROM incident_sites m
          JOIN incidents i ON i.id = m.incident_id AND i.status = 'open'
    UNION SELECT site_id FROM incident_flap
)
SELECT s.id AS site_id, s.mun_cvegeo, s.cve_ent, s.provider, ss.state,
       ss.consecutive_failures AS failures,
       coalesce(ss.state_since, ss.last_probe_at, CAST(:now AS timestamptz)) AS since,
       ss.last_error,
       (mt.site_id IS NOT NULL) AS in_maint,
       CASE WHEN ss.state IN ('down', 'degraded') THEN coalesce(
           (SELECT max(t.at) FROM site_transitions t
            WHERE t.site_id = s.id AND t.from_state IN ('up', 'unknown')
              AND t.to_state IN ('down', 'degraded')),
           ss.state_since, ss.last_probe_at, CAST(:now AS timestamptz)) END AS fail_since
FROM ids
JOIN sites s ON s.id = ids.site_id
JOIN site_status ss ON ss.site_id = s.id
LEFT JOIN incident_maint mt ON mt.site_id = s.id
WHERE s.status IN ('active', 'installed');
CREATE INDEX ON incident_cur (site_id);
CREATE INDEX ON incident_cur (mun_cvegeo);
-- Only the columns the steps filter and join on: last_error's statistics took half the time.
ANALYZE incident_cur (site_id, mun_cvegeo, state, failures, in_maint);
ANALYZE incident_flap;
ANALYZE incident_mun;
"""

STEPS: dict[str, str] = {
    "closed_inactive": """
        UPDATE incidents i SET status = 'closed', closed_at = :now, close_reason = 'site_inactive'
        FROM sites s
        WHERE i.kind = 'site' AND i.status = 'open' AND s.id = i.site_id
          AND s.status NOT IN ('active', 'installed')
        RETURNING i.id""",
    "marked_flapping": """
        UPDATE incidents i SET flapping = true, flap_changes = f.changes
        FROM incident_flap f
        WHERE i.kind = 'site' AND i.status = 'open' AND NOT i.flapping
          AND f.site_id = i.site_id AND f.changes > :flap
        RETURNING i.id""",
    "closed_recovered": """
        UPDATE incidents i
        SET status = 'closed',
            closed_at = greatest(c.since, i.started_at),
            close_reason = CASE WHEN i.flapping THEN 'stable' ELSE 'recovered' END
        FROM incident_cur c LEFT JOIN incident_flap f ON f.site_id = c.site_id
        WHERE i.kind = 'site' AND i.status = 'open' AND c.site_id = i.site_id
          AND c.state = 'up'
          AND (NOT i.flapping OR coalesce(f.changes, 0) * 2 <= :flap)
        RETURNING i.id""",
    "members_recovered": """
        UPDATE incident_sites m SET recovered_at = greatest(c.since, m.down_since)
        FROM incidents i, incident_cur c
        WHERE m.incident_id = i.id AND i.status = 'open' AND m.recovered_at IS NULL
          AND c.site_id = m.site_id AND c.state <> 'down'
        RETURNING m.site_id""",
    "closed_municipal": """
        UPDATE incidents i
        SET status = 'closed',
            closed_at = CASE WHEN x.unrecovered = 0 THEN greatest(x.last_recovery, i.started_at)
                             ELSE CAST(:now AS timestamptz) END,
            close_reason = CASE WHEN x.unrecovered = 0 THEN 'recovered' ELSE 'outage_over' END,
            sites_down = x.unrecovered
        FROM (
            SELECT i2.id, count(*) FILTER (WHERE m.recovered_at IS NULL) AS unrecovered,
                   max(m.recovered_at) AS last_recovery,
                   bool_or(coalesce(mu.outage, false)) AS outage
            FROM incidents i2
            JOIN incident_sites m ON m.incident_id = i2.id
            LEFT JOIN incident_mun mu ON mu.mun_cvegeo = i2.mun_cvegeo
            WHERE i2.kind = 'municipality' AND i2.status = 'open'
            GROUP BY i2.id
        ) x
        WHERE i.id = x.id AND (x.unrecovered = 0 OR NOT x.outage)
        RETURNING i.id""",
    "opened_municipal": """
        INSERT INTO incidents (kind, mun_cvegeo, cve_ent, cause, started_at, opened_at,
                               sites_total, sites_down)
        SELECT 'municipality', mu.mun_cvegeo, min(c.cve_ent), 'municipal_outage',
               coalesce(min(c.since) FILTER (WHERE o.id IS NULL), min(c.since)), :now,
               mu.active, mu.down
        FROM incident_mun mu
        JOIN incident_cur c ON c.mun_cvegeo = mu.mun_cvegeo AND c.state = 'down'
                            AND NOT c.in_maint
        LEFT JOIN incidents o ON o.kind = 'site' AND o.status = 'open' AND o.site_id = c.site_id
        WHERE mu.outage
          AND NOT EXISTS (SELECT 1 FROM incidents x WHERE x.kind = 'municipality'
                          AND x.status = 'open' AND x.mun_cvegeo = mu.mun_cvegeo)
        GROUP BY mu.mun_cvegeo, mu.active, mu.down
        HAVING count(*) FILTER (WHERE c.failures >= :k) > 0
        ON CONFLICT (mun_cvegeo) WHERE status = 'open' AND kind = 'municipality' DO NOTHING
        RETURNING id""",
    "joined_municipal": """
        INSERT INTO incident_sites (incident_id, site_id, joined_at, down_since)
        SELECT i.id, c.site_id, :now, c.since
        FROM incidents i
        JOIN incident_cur c ON c.mun_cvegeo = i.mun_cvegeo
        WHERE i.kind = 'municipality' AND i.status = 'open' AND c.state = 'down'
          AND NOT c.in_maint AND c.failures >= :k
        ON CONFLICT (incident_id, site_id) DO UPDATE
            SET recovered_at = NULL, down_since = excluded.down_since
            WHERE incident_sites.recovered_at IS NOT NULL
        RETURNING site_id""",
    "linked_to_municipal": """
        UPDATE incidents child SET parent_id = m.incident_id
        FROM incident_sites m JOIN incidents p ON p.id = m.incident_id
        WHERE p.kind = 'municipality' AND p.status = 'open' AND m.recovered_at IS NULL
          AND child.kind = 'site' AND child.status = 'open' AND child.parent_id IS NULL
          AND child.site_id = m.site_id
        RETURNING child.id""",
    "opened_site": """
        INSERT INTO incidents (kind, site_id, mun_cvegeo, cve_ent, provider, cause, started_at,
                               opened_at, failures_at_open, last_error)
        SELECT 'site', c.site_id, c.mun_cvegeo, c.cve_ent, c.provider, 'failures',
               c.fail_since, :now, c.failures, c.last_error
        FROM incident_cur c LEFT JOIN incident_flap f ON f.site_id = c.site_id
        WHERE c.state IN ('down', 'degraded') AND c.failures >= :k AND NOT c.in_maint
          AND coalesce(f.changes, 0) <= :flap
          AND NOT EXISTS (SELECT 1 FROM incidents o WHERE o.kind = 'site' AND o.status = 'open'
                          AND o.site_id = c.site_id)
          AND NOT EXISTS (SELECT 1 FROM incident_sites m JOIN incidents p
                              ON p.id = m.incident_id AND p.status = 'open'
                          WHERE m.site_id = c.site_id AND m.recovered_at IS NULL)
        ON CONFLICT (site_id) WHERE status = 'open' AND kind = 'site' DO NOTHING
        RETURNING id""",
    "opened_flapping": """
        INSERT INTO incidents (kind, site_id, mun_cvegeo, cve_ent, provider, cause, started_at,
                               opened_at, flapping, flap_changes, failures_at_open, last_error)
        SELECT 'site', c.site_id, c.mun_cvegeo, c.cve_ent, c.provider, 'flapping', f.first_at,
               :now, true, f.changes, c.failures, c.last_error
        FROM incident_flap f JOIN incident_cur c ON c.site_id = f.site_id
        WHERE f.changes > :flap AND NOT c.in_maint
          AND NOT EXISTS (SELECT 1 FROM incidents o WHERE o.kind = 'site' AND o.status = 'open'
                          AND o.site_id = c.site_id)
          AND NOT EXISTS (SELECT 1 FROM incident_sites m JOIN incidents p
                              ON p.id = m.incident_id AND p.status = 'open'
                          WHERE m.site_id = c.site_id AND m.recovered_at IS NULL)
        ON CONFLICT (site_id) WHERE status = 'open' AND kind = 'site' DO NOTHING
        RETURNING id""",
    "refreshed_municipal": """
        UPDATE incidents i
        SET sites_total = mu.active,
            sites_down = (SELECT count(*) FROM incident_sites m
                          WHERE m.incident_id = i.id AND m.recovered_at IS NULL)
        FROM incident_mun mu
        WHERE i.kind = 'municipality' AND i.status = 'open' AND mu.mun_cvegeo = i.mun_cvegeo
        RETURNING i.id""",
}

SUPPRESSED_SQL = """
SELECT count(*) FROM incident_cur c
WHERE c.in_maint AND c.state IN ('down', 'degraded') AND c.failures >= :k
  AND NOT EXISTS (SELECT 1 FROM incidents o WHERE o.kind = 'site' AND o.status = 'open'
                  AND o.site_id = c.site_id)
"""


@dataclass(frozen=True)
class IncidentChanges:
    """What one evaluation changed (counts of incidents or member sites)."""

    opened_site: int = 0
    opened_flapping: int = 0
    opened_municipal: int = 0
    joined_municipal: int = 0
    marked_flapping: int = 0
    closed_recovered: int = 0
    closed_municipal: int = 0
    closed_inactive: int = 0
    suppressed: int = 0

    @property
    def opened(self) -> int:
        """Incidents opened by this evaluation, of any kind."""
        return self.opened_site + self.opened_flapping + self.opened_municipal

    @property
    def closed(self) -> int:
        """Incidents closed by this evaluation, of any kind."""
        return self.closed_recovered + self.closed_municipal + self.closed_inactive


@dataclass(frozen=True)
class LastEvaluation:
    """The latest incident evaluation: when it started, how long it took, what it changed."""

    started_at: datetime
    seconds: float
    opened: int
    closed: int


@dataclass(frozen=True)
class EvaluationLeft:
    """An evaluation a batch left to the next one, and why (for its log line)."""

    reason: str


def last_evaluation(conn: Connection) -> LastEvaluation | None:
    """The latest recorded incident evaluation, or None before the first."""
    row = conn.execute(
        text("SELECT started_at, seconds, opened, closed FROM incident_evaluation")
    ).first()
    return LastEvaluation(*row) if row is not None else None


def evaluate_incidents(conn: Connection, settings: Settings, *, now: datetime) -> IncidentChanges:
    """Open, close, mark and group incidents from the current site states, set-wise (waiting
    for an evaluation that runs elsewhere to end first)."""
    _check_aware(now)
    conn.execute(text(LOCK_SQL))
    return _evaluate(conn, settings, now)


def evaluate_incidents_if_due(
    conn: Connection, settings: Settings, *, now: datetime
) -> IncidentChanges | EvaluationLeft:
    """As ``evaluate_incidents``, unless another evaluation holds the lock or the last one
    started less than ``settings.incident_evaluation_gap_s`` before ``now``: then nothing is
    done and the reason is returned, at once.

    Every evaluation reads the current state of every site, so one that starts after a batch's
    results are committed covers that batch too: a batch can leave its results to the next
    evaluation instead of queueing behind one or repeating one that just ran (results.batches).
    """
    _check_aware(now)
    if not conn.execute(text(TRY_LOCK_SQL)).scalar_one():
        return EvaluationLeft("one was running")
    gap = settings.incident_evaluation_gap_s
    last = last_evaluation(conn) if gap > 0 else None
    if last is not None:
        age = (now - last.started_at).total_seconds()
        if 0 <= age < gap:  # one "in the future" (the clock was set back) does not hold us
            return EvaluationLeft(f"the last ran {age:.0f} s ago; one every {gap:g} s at most")
    return _evaluate(conn, settings, now)


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise InvalidInput("now must carry a time zone (UTC).")


def _evaluate(conn: Connection, settings: Settings, now: datetime) -> IncidentChanges:
    began = time.perf_counter()
    params: dict[str, object] = {
        "now": now,
        "k": settings.incident_failures,
        "flap": settings.flap_changes,
        "window": float(settings.flap_window_s),
        "share": settings.municipal_outage_share,
        "min_sites": settings.municipal_outage_min_sites,
    }
    for statement in SNAPSHOT_SQL.split(";"):
        if statement.strip():
            conn.execute(text(statement), params)
    counts: dict[str, int] = {}
    for name, sql in STEPS.items():
        counts[name] = len(conn.execute(text(sql), params).all())
    suppressed = int(conn.execute(text(SUPPRESSED_SQL), params).scalar_one())
    conn.execute(text("DROP TABLE incident_cur, incident_flap, incident_mun, incident_maint"))
    changes = IncidentChanges(
        opened_site=counts["opened_site"],
        opened_flapping=counts["opened_flapping"],
        opened_municipal=counts["opened_municipal"],
        joined_municipal=counts["joined_municipal"],
        marked_flapping=counts["marked_flapping"],
        closed_recovered=counts["closed_recovered"],
        closed_municipal=counts["closed_municipal"],
        closed_inactive=counts["closed_inactive"],
        suppressed=suppressed,
    )
    conn.execute(
        text(
            "INSERT INTO incident_evaluation (started_at, seconds, opened, closed) "
            "VALUES (:now, :seconds, :opened, :closed) ON CONFLICT (one) DO UPDATE SET "
            "started_at = excluded.started_at, seconds = excluded.seconds, "
            "opened = excluded.opened, closed = excluded.closed"
        ),
        {
            "now": now,
            "seconds": time.perf_counter() - began,
            "opened": changes.opened,
            "closed": changes.closed,
        },
    )
    return changes


@dataclass(frozen=True)
class Incident:
    """One incident as operators see it (site or municipality named, members counted)."""

    id: int
    kind: str
    status: str
    cause: str
    site_id: int | None
    site_key: str | None
    site_name: str | None
    mun_cvegeo: str | None
    municipality: str | None
    cve_ent: str | None
    state_name: str | None
    provider: str | None
    started_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    duration_s: float | None
    flapping: bool
    flap_changes: int | None
    failures_at_open: int | None
    last_error: str | None
    sites_total: int | None
    sites_down: int | None
    members: int
    parent_id: int | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    comment: str | None


@dataclass(frozen=True)
class IncidentMember:
    """A site that belongs to a grouped municipal incident."""

    site_id: int
    site_key: str
    name: str
    joined_at: datetime
    down_since: datetime | None
    recovered_at: datetime | None


_SELECT = """
SELECT i.id, i.kind, i.status, i.cause, i.site_id, s.site_key, s.name AS site_name,
       i.mun_cvegeo, m.name AS municipality, i.cve_ent, st.name AS state_name, i.provider,
       i.started_at, i.opened_at, i.closed_at, i.close_reason, i.duration_s, i.flapping,
       i.flap_changes, i.failures_at_open, i.last_error, i.sites_total, i.sites_down,
       (SELECT count(*) FROM incident_sites x WHERE x.incident_id = i.id) AS members,
       i.parent_id, i.acknowledged_by, i.acknowledged_at, i.comment
FROM incidents i
LEFT JOIN sites s ON s.id = i.site_id
LEFT JOIN municipalities m ON m.cvegeo = i.mun_cvegeo
LEFT JOIN states st ON st.cve_ent = i.cve_ent
"""


def _incident(row: Any) -> Incident:
    return Incident(**dict(row._mapping))


def list_incidents(
    conn: Connection,
    *,
    status: str = "open",
    kind: str | None = None,
    site_key: str | None = None,
    mun_cvegeo: str | None = None,
    cve_ent: str | None = None,
    provider: str | None = None,
    acknowledged: bool | None = None,
    include_children: bool = False,
    before_id: int | None = None,
    limit: int = 100,
) -> list[Incident]:
    """Incidents newest first (keyset by id); children of a municipal incident only on request.

    ``provider`` matches the site's provider exactly (a municipal outage has none);
    ``acknowledged`` False keeps those nobody has acknowledged yet.
    """
    if status not in ("open", "closed", "all"):
        raise InvalidInput(f"status '{status}' is not one of open, closed, all.")
    if kind not in (None, "site", "municipality"):
        raise InvalidInput(f"kind '{kind}' is not one of site, municipality.")
    where = ["TRUE"]
    params: dict[str, object] = {"limit": limit}
    if status != "all":
        where.append("i.status = :status")
        params["status"] = status
    if kind is not None:
        where.append("i.kind = :kind")
        params["kind"] = kind
    if site_key is not None:
        where.append(
            "(s.site_key = :key OR EXISTS (SELECT 1 FROM incident_sites x JOIN sites y "
            "ON y.id = x.site_id WHERE x.incident_id = i.id AND y.site_key = :key))"
        )
        params["key"] = site_key
        include_children = True
    if mun_cvegeo is not None:
        where.append("i.mun_cvegeo = :mun")
        params["mun"] = mun_cvegeo
    if cve_ent is not None:
        where.append("i.cve_ent = :ent")
        params["ent"] = cve_ent
    if provider is not None:
        where.append("i.provider = :provider")
        params["provider"] = provider
    if acknowledged is not None:
        where.append(f"i.acknowledged_by IS {'NOT ' if acknowledged else ''}NULL")
    if not include_children:
        where.append("i.parent_id IS NULL")
    if before_id is not None:
        where.append("i.id < :before")
        params["before"] = before_id
    sql = _SELECT + " WHERE " + " AND ".join(where) + " ORDER BY i.id DESC LIMIT :limit"
    return [_incident(r) for r in conn.execute(text(sql), params)]


def count_open_incidents(conn: Connection) -> tuple[int, int]:
    """(site incidents, municipal incidents) open now; members of a municipal one not counted
    on their own, as ``list_incidents`` lists them."""
    row = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE kind = 'site'), count(*) FILTER (WHERE kind = "
            "'municipality') FROM incidents WHERE status = 'open' AND parent_id IS NULL"
        )
    ).one()
    return int(row[0]), int(row[1])


def get_incident(conn: Connection, incident_id: int) -> Incident:
    """Return one incident or raise NotFound."""
    row = conn.execute(text(_SELECT + " WHERE i.id = :id"), {"id": incident_id}).one_or_none()
    if row is None:
        raise NotFound(f"No incident has the id {incident_id}.")
    return _incident(row)


def incident_members(conn: Connection, incident_id: int) -> list[IncidentMember]:
    """The member sites of a municipal incident, still failing ones first."""
    rows = conn.execute(
        text(
            "SELECT m.site_id, s.site_key, s.name, m.joined_at, m.down_since, m.recovered_at "
            "FROM incident_sites m JOIN sites s ON s.id = m.site_id "
            "WHERE m.incident_id = :id ORDER BY m.recovered_at NULLS FIRST, s.site_key"
        ),
        {"id": incident_id},
    )
    return [IncidentMember(**dict(r._mapping)) for r in rows]


def acknowledge_incident(
    conn: Connection, incident_id: int, *, by: str, now: datetime, comment: str | None = None
) -> Incident:
    """Record who acknowledged an incident (the first acknowledgement is kept) and a comment."""
    if not by.strip():
        raise InvalidInput("by is empty; name who acknowledges the incident.")
    get_incident(conn, incident_id)
    conn.execute(
        text(
            "UPDATE incidents SET acknowledged_by = coalesce(acknowledged_by, :by), "
            "acknowledged_at = coalesce(acknowledged_at, :now), "
            "comment = coalesce(:comment, comment) WHERE id = :id"
        ),
        {"by": by.strip(), "now": now, "comment": comment, "id": incident_id},
    )
    return get_incident(conn, incident_id)
