from sqlalchemy import Engine, text

from tests.scheduler.helpers import add_site


def test_state_changes_of_site_status_are_recorded_as_transitions(engine: Engine) -> None:
    with engine.begin() as conn:
        a, b = add_site(conn, "A"), add_site(conn, "B")
        conn.execute(
            text(
                "INSERT INTO site_status (site_id, state, state_since) VALUES "
                "(:a, 'up', '2030-01-01T00:00Z'), (:b, 'unknown', NULL)"
            ),
            {"a": a, "b": b},
        )
        # an upsert (INSERT ... ON CONFLICT DO UPDATE) as a bulk store would write it
        conn.execute(
            text(
                "INSERT INTO site_status (site_id, state, state_since) VALUES "
                "(:a, 'down', '2030-01-01T00:05Z'), (:b, 'unknown', NULL) "
                "ON CONFLICT (site_id) DO UPDATE SET state = excluded.state, "
                "state_since = excluded.state_since"
            ),
            {"a": a, "b": b},
        )
        conn.execute(text("UPDATE site_status SET state = 'up', state_since = '2030-01-01T00:10Z'"))
        rows = conn.execute(
            text("SELECT site_id, at, from_state, to_state FROM site_transitions ORDER BY id")
        ).all()
    got = [(r.site_id, r.at.isoformat(), r.from_state, r.to_state) for r in rows]
    assert got == [
        (a, "2030-01-01T00:00:00+00:00", "unknown", "up"),
        (a, "2030-01-01T00:05:00+00:00", "up", "down"),
        (a, "2030-01-01T00:10:00+00:00", "down", "up"),
        (b, "2030-01-01T00:10:00+00:00", "unknown", "up"),
    ]


def test_a_large_state_change_after_an_empty_one_is_not_planned_for_empty_tables(
    engine: Engine,
) -> None:
    """The transition join is planned per call: an empty update first (as a round of new
    sites makes) must not leave a nested-loop plan that a 20,000-row update then runs
    (measured: > 20 s with the plan kept, ~0.5 s planned per call)."""
    n = 20_000
    with engine.connect() as conn, conn.begin():
        conn.execute(
            text(
                "INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, status) "
                "SELECT 'T' || g, 'Site ' || g, 'school', ST_PointOnSurface(m.geom), m.cvegeo, "
                "m.cve_ent, 'active' FROM municipalities m, generate_series(1, :n) g "
                "WHERE m.cvegeo = '09015'"
            ),
            {"n": n},
        )
        conn.execute(text("INSERT INTO site_status (site_id, state) SELECT id, 'up' FROM sites"))
        conn.execute(text("UPDATE site_status SET state = state WHERE site_id < 0"))
        conn.execute(text("SET LOCAL statement_timeout = '5s'"))
        conn.execute(text("UPDATE site_status SET state = 'down'"))
        changed = conn.execute(
            text("SELECT count(*) FROM site_transitions WHERE to_state = 'down'")
        ).scalar_one()
    assert changed == n


def test_job_store_table_matches_what_apscheduler_would_create(engine: Engine) -> None:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    store = SQLAlchemyJobStore(engine=engine)
    cols = {c.name: c for c in store.jobs_t.columns}
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'apscheduler_jobs' ORDER BY ordinal_position"
            )
        ).all()
    assert [r.column_name for r in rows] == list(cols)
    assert [r.data_type for r in rows] == ["character varying", "double precision", "bytea"]
