"""pg_trgm's similarity tests carry their measured cost, and keep it across a restore."""

from __future__ import annotations

from sqlalchemy import Engine, text

from db.migrate import upgrade
from db.trigram import (
    SIMILARITY_COST,
    SIMILARITY_FUNCTIONS,
    reprice_similarity_tests,
    similarity_cost_sql,
)


def _costs(engine: Engine) -> dict[str, float]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT proname, procost FROM pg_proc WHERE proname = ANY(:names)"),
            {"names": list(SIMILARITY_FUNCTIONS)},
        ).all()
    return {name: float(cost) for name, cost in rows}


def test_the_migrations_price_the_similarity_tests(engine: Engine) -> None:
    assert _costs(engine) == dict.fromkeys(SIMILARITY_FUNCTIONS, SIMILARITY_COST)


def test_an_upgrade_puts_back_the_price_a_restore_drops(engine: Engine, db_url: str) -> None:
    with engine.begin() as conn:  # what pg_restore leaves: the extension's defaults
        conn.exec_driver_sql(similarity_cost_sql(1))
    assert set(_costs(engine).values()) == {1.0}
    upgrade(db_url)  # already at the newest revision: no migration runs
    assert _costs(engine) == dict.fromkeys(SIMILARITY_FUNCTIONS, SIMILARITY_COST)
    with engine.begin() as conn:
        assert reprice_similarity_tests(conn) is False  # nothing left to do
