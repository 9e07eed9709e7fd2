"""Probe results (partitioned by day), probe rounds, site status, counter state, reboots.

Revision ID: 0003_probes
Revises: 0002_sites
"""

from alembic import op

revision = "0003_probes"
down_revision = "0002_sites"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # site_status is the contract other layers read (coverage, maps, API): one row per probed
    # site with its current state. Columns after out_bps were added by the probe engine.
    op.execute(
        """
        CREATE TABLE site_status (
            site_id         bigint PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
            state           text NOT NULL DEFAULT 'unknown'
                                CHECK (state IN ('up', 'degraded', 'down', 'unknown')),
            state_since     timestamptz,
            last_probe_at   timestamptz,
            last_ok_at      timestamptz,
            last_failure_at timestamptz,
            last_error      text,
            consecutive_failures integer NOT NULL DEFAULT 0,
            latency_ms      real,
            in_bps          double precision,
            out_bps         double precision,
            rates_at        timestamptz,
            snmp_ok         boolean,
            snmp_error      text,
            http_ok         boolean,
            http_error      text,
            http_status     smallint,
            oper_status     smallint,
            tls_days_left   real,
            last_round_id   uuid
        ) WITH (fillfactor = 60);
        -- Every round rewrites every probed site's row: free space on each page and a single
        -- index on a column that rarely changes (state) keep those updates HOT (no index
        -- writes). last_ok_at is read over all sites at once, so it needs no index.
        CREATE INDEX ix_site_status_state ON site_status (state);

        -- One row per probe round: what was probed, how it went, how fast. The id is chosen
        -- by the prober and written in the same transaction as the round's results, so a
        -- replay of a spooled round that was already written is recognised and skipped.
        CREATE TABLE probe_rounds (
            id              uuid PRIMARY KEY,
            started_at      timestamptz NOT NULL,
            finished_at     timestamptz NOT NULL,
            written_at      timestamptz NOT NULL DEFAULT now(),
            kinds           text[] NOT NULL,
            sites           integer NOT NULL,
            snmp_probes     integer NOT NULL DEFAULT 0,
            http_probes     integer NOT NULL DEFAULT 0,
            up              integer NOT NULL DEFAULT 0,
            degraded        integer NOT NULL DEFAULT 0,
            down            integer NOT NULL DEFAULT 0,
            latency_p50_ms  real,
            latency_p95_ms  real,
            probes_per_s    real,
            rates_computed  integer NOT NULL DEFAULT 0,
            reboots         integer NOT NULL DEFAULT 0,
            bogus_rates     integer NOT NULL DEFAULT 0,
            from_spool      boolean NOT NULL DEFAULT false
        );
        CREATE INDEX ix_probe_rounds_started ON probe_rounds (started_at);

        -- Every probe's outcome. Partitioned by UTC day so that retention drops whole days and
        -- time-range reads touch only their days. `state` is the site's state for the whole
        -- round (the same on its snmp and http rows); in_bps/out_bps are the rates computed
        -- for the interval ending at this poll (snmp rows only).
        CREATE TABLE probe_results (
            round_id        uuid NOT NULL,
            site_id         bigint NOT NULL,
            ts              timestamptz NOT NULL,
            kind            text NOT NULL CHECK (kind IN ('snmp', 'http')),
            ok              boolean NOT NULL,
            state           text NOT NULL CHECK (state IN ('up', 'degraded', 'down')),
            latency_ms      real,
            error           text,
            error_detail    text,
            if_index        integer,
            sys_uptime      bigint,
            in_octets       numeric(20, 0),
            out_octets      numeric(20, 0),
            counter_bits    smallint,
            oper_status     smallint,
            high_speed_mbps bigint,
            in_bps          double precision,
            out_bps         double precision,
            status_code     smallint,
            connect_ms      real,
            ttfb_ms         real,
            total_ms        real,
            tls_days_left   real,
            keyword_found   boolean,
            throughput_mbps real,
            bytes_read      bigint
        ) PARTITION BY RANGE (ts);
        CREATE INDEX ix_probe_results_site_ts ON probe_results (site_id, ts);
        CREATE INDEX ix_probe_results_ts ON probe_results USING brin (ts);

        -- Creates the missing daily partitions covering [from_day, to_day]; returns how many
        -- it made. Serialised by an advisory lock so concurrent writers do not collide.
        CREATE FUNCTION ensure_probe_results_partitions(from_day date, to_day date)
        RETURNS integer LANGUAGE plpgsql AS $$
        DECLARE
            d date;
            made integer := 0;
            part text;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('probe_results_partitions'));
            FOR d IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
                part := 'probe_results_p' || to_char(d, 'YYYYMMDD');
                IF to_regclass(part) IS NULL THEN
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF probe_results FOR VALUES FROM (%L) TO (%L)',
                        part,
                        (d::timestamp AT TIME ZONE 'UTC'),
                        ((d + 1)::timestamp AT TIME ZONE 'UTC'));
                    made := made + 1;
                END IF;
            END LOOP;
            RETURN made;
        END $$;

        SELECT ensure_probe_results_partitions(
            (now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7);

        -- What the next rate needs: the last successful SNMP poll of each site.
        CREATE TABLE counter_state (
            site_id         bigint PRIMARY KEY REFERENCES sites (id) ON DELETE CASCADE,
            ts              timestamptz NOT NULL,
            sys_uptime      bigint,
            in_octets       numeric(20, 0) NOT NULL,
            out_octets      numeric(20, 0) NOT NULL,
            counter_bits    smallint NOT NULL CHECK (counter_bits IN (32, 64)),
            if_index        integer
        ) WITH (fillfactor = 60);

        CREATE TABLE reboot_events (
            id              bigserial PRIMARY KEY,
            site_id         bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
            detected_at     timestamptz NOT NULL,
            round_id        uuid,
            reason          text NOT NULL CHECK (reason IN ('uptime_decreased',
                                                             'counter_decreased')),
            prev_uptime     bigint,
            new_uptime      bigint
        );
        CREATE INDEX ix_reboot_events_site ON reboot_events (site_id, detected_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS reboot_events, counter_state, probe_results, probe_rounds,
            site_status CASCADE;
        DROP FUNCTION IF EXISTS ensure_probe_results_partitions(date, date);
        """
    )
