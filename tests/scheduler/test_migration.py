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
