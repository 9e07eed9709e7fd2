"""Scheduler: job store, batch runs, state transitions, incidents, maintenance, rollups.

Revision ID: 0004_scheduler
Revises: 0003_probes
"""

from alembic import op

revision = "0004_scheduler"
down_revision = "0003_probes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- The table APScheduler 3's SQLAlchemyJobStore would create on start (same name,
        -- columns and index); it checks first, so with this table nothing is made at run time.
        CREATE TABLE apscheduler_jobs (
            id              varchar(191) PRIMARY KEY,
            next_run_time   double precision,
            job_state       bytea NOT NULL
        );
        CREATE INDEX ix_apscheduler_jobs_next_run_time ON apscheduler_jobs (next_run_time);

        -- One row per probe batch run: the slot (the start of the interval it belongs to)
        -- is claimed once, so two schedulers never probe the same batch twice in a slot.
        CREATE TABLE scheduler_batch_runs (
            batches         integer NOT NULL CHECK (batches >= 1),
            batch           integer NOT NULL CHECK (batch >= 0 AND batch < batches),
            slot_start      timestamptz NOT NULL,
            interval_s      integer NOT NULL CHECK (interval_s >= 1),
            started_at      timestamptz NOT NULL,
            finished_at     timestamptz,
            outcome         text NOT NULL DEFAULT 'running'
                                CHECK (outcome IN ('running', 'done', 'failed')),
            runner          text NOT NULL,
            round_id        uuid,
            sites           integer,
            up              integer,
            degraded        integer,
            down            integer,
            error           text,
            PRIMARY KEY (batches, batch, slot_start)
        );
        CREATE INDEX ix_scheduler_batch_runs_started ON scheduler_batch_runs (started_at);

        -- Every change of a site's state, written by a statement-level trigger on
        -- site_status, so incidents and flapping read history without touching the store.
        CREATE TABLE site_transitions (
            id              bigserial PRIMARY KEY,
            site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
            at              timestamptz NOT NULL,
            from_state      text NOT NULL,
            to_state        text NOT NULL,
            round_id        uuid
        );
        CREATE INDEX ix_site_transitions_site_at ON site_transitions (site_id, at);
        CREATE INDEX ix_site_transitions_at ON site_transitions (at);

        CREATE FUNCTION site_status_transitions_on_update() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO site_transitions (site_id, at, from_state, to_state, round_id)
            SELECT n.site_id, coalesce(n.state_since, n.last_probe_at, now()), o.state, n.state,
                   n.last_round_id
            FROM new_rows n JOIN old_rows o ON o.site_id = n.site_id
            WHERE n.state IS DISTINCT FROM o.state;
            RETURN NULL;
        END $$;

        CREATE FUNCTION site_status_transitions_on_insert() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO site_transitions (site_id, at, from_state, to_state, round_id)
            SELECT n.site_id, coalesce(n.state_since, n.last_probe_at, now()), 'unknown', n.state,
                   n.last_round_id
            FROM new_rows n
            WHERE n.state <> 'unknown';
            RETURN NULL;
        END $$;

        CREATE TRIGGER site_status_transitions_update AFTER UPDATE ON site_status
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION site_status_transitions_on_update();
        CREATE TRIGGER site_status_transitions_insert AFTER INSERT ON site_status
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION site_status_transitions_on_insert();

        -- Maintenance windows suppress incidents for one site, a municipality or a provider.
        CREATE TABLE maintenance_windows (
            id              bigserial PRIMARY KEY,
            scope           text NOT NULL CHECK (scope IN ('site', 'municipality', 'provider')),
            site_id         bigint REFERENCES sites (id) ON DELETE CASCADE,
            mun_cvegeo      char(5) REFERENCES municipalities (cvegeo),
            provider        text,
            starts_at       timestamptz NOT NULL,
            ends_at         timestamptz NOT NULL,
            reason          text NOT NULL CHECK (length(btrim(reason)) > 0),
            created_by      text NOT NULL CHECK (length(btrim(created_by)) > 0),
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_maintenance_windows_period CHECK (ends_at > starts_at),
            CONSTRAINT ck_maintenance_windows_target CHECK (
                (scope = 'site' AND site_id IS NOT NULL AND mun_cvegeo IS NULL
                    AND provider IS NULL)
                OR (scope = 'municipality' AND mun_cvegeo IS NOT NULL AND site_id IS NULL
                    AND provider IS NULL)
                OR (scope = 'provider' AND provider IS NOT NULL AND site_id IS NULL
                    AND mun_cvegeo IS NULL))
        );
        CREATE INDEX ix_maintenance_windows_period ON maintenance_windows (ends_at, starts_at);

        -- Incidents: one per failing site, or one per municipality when most of its active
        -- sites fail together (its members in incident_sites). Kept forever.
        CREATE TABLE incidents (
            id              bigserial PRIMARY KEY,
            kind            text NOT NULL CHECK (kind IN ('site', 'municipality')),
            site_id         bigint REFERENCES sites (id) ON DELETE CASCADE,
            mun_cvegeo      char(5) REFERENCES municipalities (cvegeo),
            cve_ent         char(2) REFERENCES states (cve_ent),
            provider        text,
            status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
            cause           text NOT NULL CHECK (cause IN ('failures', 'flapping',
                                                           'municipal_outage')),
            started_at      timestamptz NOT NULL,
            opened_at       timestamptz NOT NULL,
            closed_at       timestamptz,
            close_reason    text CHECK (close_reason IN ('recovered', 'stable', 'site_inactive',
                                                         'outage_over')),
            duration_s      double precision GENERATED ALWAYS AS
                                (extract(epoch FROM closed_at - started_at)) STORED,
            flapping        boolean NOT NULL DEFAULT false,
            flap_changes    integer,
            failures_at_open integer,
            last_error      text,
            sites_total     integer,
            sites_down      integer,
            parent_id       bigint REFERENCES incidents (id),
            acknowledged_by text,
            acknowledged_at timestamptz,
            comment         text,
            CONSTRAINT ck_incidents_target CHECK (
                (kind = 'site' AND site_id IS NOT NULL)
                OR (kind = 'municipality' AND mun_cvegeo IS NOT NULL AND site_id IS NULL)),
            CONSTRAINT ck_incidents_closed CHECK (
                (status = 'closed') = (closed_at IS NOT NULL AND close_reason IS NOT NULL)),
            CONSTRAINT ck_incidents_ack
                CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL))
        );
        CREATE UNIQUE INDEX uq_incidents_open_site ON incidents (site_id)
            WHERE status = 'open' AND kind = 'site';
        CREATE UNIQUE INDEX uq_incidents_open_municipality ON incidents (mun_cvegeo)
            WHERE status = 'open' AND kind = 'municipality';
        CREATE INDEX ix_incidents_site ON incidents (site_id, started_at);
        CREATE INDEX ix_incidents_opened ON incidents (opened_at);
        CREATE INDEX ix_incidents_open ON incidents (status) WHERE status = 'open';

        CREATE TABLE incident_sites (
            incident_id     bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
            joined_at       timestamptz NOT NULL,
            down_since      timestamptz,
            recovered_at    timestamptz,
            PRIMARY KEY (incident_id, site_id)
        );
        CREATE INDEX ix_incident_sites_site ON incident_sites (site_id);

        -- Rollups, kept forever. Hours and days are UTC. Uptime % = up rounds / rounds with a
        -- result (results/status.py); latency percentiles are of successful probes, SNMP and HTTP
        -- apart; utilisation = average bps / contracted bps.
        CREATE TABLE rollup_site_hourly (
            site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
            hour            timestamptz NOT NULL,
            rounds          integer NOT NULL,
            up_rounds       integer NOT NULL,
            degraded_rounds integer NOT NULL,
            down_rounds     integer NOT NULL,
            uptime_pct      double precision,
            snmp_latency_p50_ms double precision,
            snmp_latency_p95_ms double precision,
            http_latency_p50_ms double precision,
            http_latency_p95_ms double precision,
            rate_samples    integer NOT NULL,
            in_bps_avg      double precision,
            in_bps_p95      double precision,
            in_bps_max      double precision,
            out_bps_avg     double precision,
            out_bps_p95     double precision,
            out_bps_max     double precision,
            util_in_pct     double precision,
            util_out_pct    double precision,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site_id, hour)
        );
        CREATE INDEX ix_rollup_site_hourly_hour ON rollup_site_hourly (hour);

        CREATE TABLE rollup_site_daily (
            site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
            day             date NOT NULL,
            rounds          integer NOT NULL,
            up_rounds       integer NOT NULL,
            degraded_rounds integer NOT NULL,
            down_rounds     integer NOT NULL,
            uptime_pct      double precision,
            snmp_latency_p50_ms double precision,
            snmp_latency_p95_ms double precision,
            http_latency_p50_ms double precision,
            http_latency_p95_ms double precision,
            rate_samples    integer NOT NULL,
            in_bps_avg      double precision,
            in_bps_p95      double precision,
            in_bps_max      double precision,
            out_bps_avg     double precision,
            out_bps_p95     double precision,
            out_bps_max     double precision,
            util_in_pct     double precision,
            util_out_pct    double precision,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site_id, day)
        );
        CREATE INDEX ix_rollup_site_daily_day ON rollup_site_daily (day);

        -- Daily per municipality, state and provider: one table, `level` says which key.
        CREATE TABLE rollup_group_daily (
            level           text NOT NULL CHECK (level IN ('municipality', 'state', 'provider')),
            key             text NOT NULL,
            day             date NOT NULL,
            sites           integer NOT NULL,
            sites_all_up    integer NOT NULL,
            sites_with_down integer NOT NULL,
            rounds          integer NOT NULL,
            up_rounds       integer NOT NULL,
            degraded_rounds integer NOT NULL,
            down_rounds     integer NOT NULL,
            uptime_pct      double precision,
            snmp_latency_p50_ms double precision,
            snmp_latency_p95_ms double precision,
            http_latency_p50_ms double precision,
            http_latency_p95_ms double precision,
            in_bps_total    double precision,
            out_bps_total   double precision,
            in_bps_max      double precision,
            out_bps_max     double precision,
            contracted_down_bps double precision,
            contracted_up_bps   double precision,
            util_in_pct     double precision,
            util_out_pct    double precision,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (level, key, day)
        );
        CREATE INDEX ix_rollup_group_daily_day ON rollup_group_daily (day, level);

        -- Which periods have been rolled up (retention rolls up a day before dropping it).
        CREATE TABLE rollup_runs (
            period          text NOT NULL CHECK (period IN ('hour', 'day')),
            period_start    timestamptz NOT NULL,
            computed_at     timestamptz NOT NULL DEFAULT now(),
            site_rows       integer NOT NULL,
            group_rows      integer NOT NULL DEFAULT 0,
            raw_rows        bigint NOT NULL,
            seconds         double precision NOT NULL,
            PRIMARY KEY (period, period_start)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER IF EXISTS site_status_transitions_update ON site_status;
        DROP TRIGGER IF EXISTS site_status_transitions_insert ON site_status;
        DROP FUNCTION IF EXISTS site_status_transitions_on_update();
        DROP FUNCTION IF EXISTS site_status_transitions_on_insert();
        DROP TABLE IF EXISTS rollup_runs, rollup_group_daily, rollup_site_daily,
            rollup_site_hourly, incident_sites, incidents, maintenance_windows,
            site_transitions, scheduler_batch_runs, apscheduler_jobs CASCADE;
        """
    )
