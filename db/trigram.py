"""The planner's price of pg_trgm's similarity tests (set by migration 0009, kept by upgrade).

pg_trgm declares ``%``, ``<%`` and ``%>`` at the default cost of one operator call; measured on
the 101,322-site inventory they cost about a thousand (see migration 0009). The price lives on
the extension's own functions, which ``pg_dump`` does not carry: a restored database has the
default again while alembic sees 0009 as applied. ``upgrade`` therefore puts it back.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

SIMILARITY_FUNCTIONS = ("similarity_op", "word_similarity_op", "word_similarity_commutator_op")
SIMILARITY_COST = 1000


def similarity_cost_sql(cost: int) -> str:
    """A DO block that sets ``cost`` on the similarity functions, or warns if this role may not.

    Changing an extension's functions needs their owner; without that right searches stay
    correct, only slower, so the block raises a WARNING instead of failing the migration.
    """
    alters = " ".join(
        f"ALTER FUNCTION {name}(text, text) COST {int(cost)};" for name in SIMILARITY_FUNCTIONS
    )
    return f"""
        DO $do$
        BEGIN
            {alters}
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'pg_trgm similarity functions keep their default cost: '
                'this role does not own them (text search works, but slower)';
        END $do$;
    """


def reprice_similarity_tests(conn: Connection) -> bool:
    """Give the similarity functions ``SIMILARITY_COST`` where they lack it; True if any did."""
    mispriced = conn.execute(
        text("SELECT count(*) FROM pg_proc WHERE proname = ANY(:names) AND procost <> :cost"),
        {"names": list(SIMILARITY_FUNCTIONS), "cost": SIMILARITY_COST},
    ).scalar_one()
    if not mispriced:
        return False
    conn.exec_driver_sql(similarity_cost_sql(SIMILARITY_COST))
    return True
