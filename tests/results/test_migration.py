from sqlalchemy import Engine, text


def test_probe_tables_exist_with_partitions_for_the_coming_week(engine: Engine) -> None:
    with engine.begin() as conn:
        parts = conn.execute(
            text("SELECT count(*) FROM pg_inherits WHERE inhparent = 'probe_results'::regclass")
        ).scalar_one()
        assert parts >= 8
        made = conn.execute(
            text("SELECT ensure_probe_results_partitions(DATE '2031-01-01', DATE '2031-01-03')")
        ).scalar_one()
        assert made == 3
        again = conn.execute(
            text("SELECT ensure_probe_results_partitions(DATE '2031-01-01', DATE '2031-01-03')")
        ).scalar_one()
        assert again == 0
        bounds = conn.execute(
            text(
                "SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                "WHERE relname = 'probe_results_p20310102'"
            )
        ).scalar_one()
        assert "2031-01-02 00:00:00+00" in bounds and "2031-01-03 00:00:00+00" in bounds
