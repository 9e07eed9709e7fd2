"""Coverage on real PostGIS: a hand-made case with exact answers, and the census totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pyproj import Geod
from sqlalchemy import Connection, Engine, text

from core.errors import InvalidInput, NotFound
from core.settings import Settings
from geo.coverage import compute_coverage
from geo.coverage_queries import (
    get_run,
    latest_run,
    list_runs,
    municipality_coverage,
    national_coverage,
    state_coverage,
    uncovered_localities,
)

GEOD = Geod(ellps="WGS84")
AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A, B = "26030", "26047"  # Hermosillo and Pitiquito (Sonora) share a 152 km border
C = "20001"  # Abejones (Oaxaca): its localities are removed to test "population, no locality"


def _point(lon: float, lat: float) -> str:
    return f"SRID=4326;POINT({lon!r} {lat!r})"


def _toward(conn: Connection, start: tuple[float, float], cvegeo: str, dist: float) -> str:
    """A point ``dist`` metres (geodesic) from ``start`` toward the inside of ``cvegeo``."""
    inside = conn.execute(
        text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p "
            "FROM municipalities WHERE cvegeo = :c) x"
        ),
        {"c": cvegeo},
    ).one()
    azimuth, _, _ = GEOD.inv(start[0], start[1], inside[0], inside[1])
    lon, lat, _ = GEOD.fwd(start[0], start[1], azimuth, dist)
    return _point(lon, lat)


def _add_locality(conn: Connection, key: str, mun: str, pop: int, wkt: str) -> None:
    conn.execute(
        text(
            "INSERT INTO localities (cvegeo, mun_cvegeo, cve_ent, name, ambito, pop_2020, geom) "
            "VALUES (:k, :m, :e, :n, 'RURAL', :p, ST_GeomFromEWKT(:g))"
        ),
        {"k": key, "m": mun, "e": mun[:2], "n": f"Hand {key}", "p": pop, "g": wkt},
    )
    inside = conn.execute(
        text(
            "SELECT ST_Contains(m.geom, ST_GeomFromEWKT(:g)) FROM municipalities m "
            "WHERE cvegeo = :m"
        ),
        {"g": wkt, "m": mun},
    ).scalar_one()
    assert inside, f"hand-made locality {key} must lie inside {mun}"


def _add_site(
    conn: Connection,
    key: str,
    category: str,
    status: str,
    wkt: str,
    mun: str | None,
    last_ok: datetime | None = None,
) -> None:
    site_id = conn.execute(
        text(
            "INSERT INTO sites (site_key, name, category, geom, mun_cvegeo, cve_ent, status) "
            "VALUES (:k, :k, :c, ST_GeomFromEWKT(:g), :m, :e, :s) RETURNING id"
        ),
        {"k": key, "c": category, "g": wkt, "m": mun, "e": mun[:2] if mun else None, "s": status},
    ).scalar_one()
    if last_ok is not None:
        conn.execute(
            text(
                "INSERT INTO site_status (site_id, state, last_probe_at, last_ok_at) "
                "VALUES (:id, 'up', :ok, :ok)"
            ),
            {"id": site_id, "ok": last_ok},
        )


@pytest.fixture
def hand_made(engine: Engine) -> dict[str, object]:
    """The hand-made case: S on the A/B border, localities at exact geodesic distances."""
    with engine.begin() as conn:
        border = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_LineInterpolatePoint(ST_LineMerge("
                "ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 2)), 0.5) p "
                "FROM municipalities a, municipalities b WHERE a.cvegeo = :a AND b.cvegeo = :b) x"
            ),
            {"a": A, "b": B},
        ).one()
        s = (float(border[0]), float(border[1]))
        conn.execute(
            text("DELETE FROM localities WHERE mun_cvegeo IN (:a, :b, :c)"),
            {"a": A, "b": B, "c": C},
        )
        l4 = _toward(conn, s, A, 5000.5)
        _add_locality(conn, "260309001", A, 1000, _toward(conn, s, A, 1000.0))
        _add_locality(conn, "260309004", A, 300, l4)
        _add_locality(conn, "260479002", B, 2000, _toward(conn, s, B, 3000.0))
        _add_locality(conn, "260479003", B, 400, _toward(conn, s, B, 5000.0))
        # S: working, on the border, assigned to A by the inventory.
        _add_site(conn, "S-BORDER", "school", "active", _point(*s), A, AS_OF - timedelta(hours=1))
        # W: planned, on the border too, with no municipality: assigned once, by the rule.
        _add_site(conn, "W-BORDER", "community", "planned", _point(*s), None)
        # T: active, 100 m from L4, but its last good probe is 30 h old: not working.
        t_lon, t_lat = (float(v) for v in l4.split("(")[1].rstrip(")").split())
        t_lon2, t_lat2, _ = GEOD.fwd(t_lon, t_lat, 0.0, 100.0)
        _add_site(
            conn,
            "T-STALE",
            "health",
            "active",
            _point(t_lon2, t_lat2),
            A,
            AS_OF - timedelta(hours=30),
        )
        # V: planned in B; U: retired in B (not counted at all).
        _add_site(conn, "V-PLANNED", "government", "planned", _toward(conn, s, B, 2000.0), B)
        _add_site(conn, "U-RETIRED", "school", "retired", _toward(conn, s, B, 2500.0), B)
        pops: dict[str, int] = dict(
            conn.execute(
                text("SELECT cvegeo, pop_2020 FROM municipalities WHERE cvegeo IN (:a, :b, :c)"),
                {"a": A, "b": B, "c": C},
            ).all()
        )
    return {"s": s, "pops": pops}


def _settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


def test_hand_made_case_has_the_exact_answers(engine: Engine, hand_made: dict[str, object]) -> None:
    run = compute_coverage(engine, _settings(), as_of=AS_OF)
    assert (run.basis, run.radius_km, run.working_hours) == ("probes", 5.0, 24.0)
    assert (run.sites, run.active_sites, run.working_sites) == (4, 2, 1)
    pops = hand_made["pops"]
    assert isinstance(pops, dict)
    with engine.connect() as conn:
        locs = {
            r.cvegeo: r
            for r in uncovered_localities(conn, run.id, include_covered=True, limit=None)
            if r.cvegeo.startswith(("26030", "26047"))
        }
        # Geodesic distances reproduce pyproj's to well under a millimetre.
        assert locs["260309001"].nearest_distance_m == pytest.approx(1000.0, abs=1e-4)
        assert locs["260479002"].nearest_distance_m == pytest.approx(3000.0, abs=1e-4)
        assert locs["260479003"].nearest_distance_m == pytest.approx(5000.0, abs=1e-4)
        assert locs["260309004"].nearest_distance_m == pytest.approx(5000.5, abs=1e-4)
        # Exactly R is within R; half a metre beyond is not; the stale site T does not count.
        covered = {k: v.covered for k, v in locs.items()}
        assert covered == {
            "260309001": True,
            "260309004": False,
            "260479002": True,
            "260479003": True,
        }
        assert {v.nearest_site_key for v in locs.values()} == {"S-BORDER"}

        a, b, c = (municipality_coverage(conn, run.id, cvegeo=k)[0] for k in (A, B, C))
        # The border sites count once each: S where the inventory put it, W by the rule; with T
        # and V that makes 4 (U is retired).
        assert a.sites + b.sites == 4
        w_home = conn.execute(
            text(
                "SELECT m.cvegeo FROM municipalities m, sites s WHERE s.site_key = 'W-BORDER' "
                "AND ST_DWithin(m.geom::geography, s.geom::geography, 1000) "
                "ORDER BY m.geom <-> s.geom, m.cvegeo LIMIT 1"
            )
        ).scalar_one()
        assert w_home in (A, B)
        a_sites = 2 + (w_home == A)
        assert (a.sites, a.active_sites, a.working_sites) == (a_sites, 2, 1)
        assert (a.sites_school, a.sites_health, a.sites_community) == (1, 1, int(w_home == A))
        assert (b.sites, b.active_sites, b.working_sites, b.sites_government) == (
            4 - a_sites,
            0,
            0,
            1,
        )
        # A: census population, localities 1,000 + 300, of which 1,000 covered.
        pa, pb, pc = pops[A], pops[B], pops[C]
        assert (a.pop_2020, a.locality_count, a.locality_pop, a.covered_pop) == (pa, 2, 1300, 1000)
        assert a.covered_pct_census == pytest.approx(100 * 1000 / pa)
        assert a.covered_pct_localities == pytest.approx(100 * 1000 / 1300)
        assert a.uncovered_pop == pa - 1000
        assert a.unlocated_pop == pa - 1300
        assert a.priority_score == pytest.approx((pa - 1000) * (1 + (pa - 1000) / pa))
        assert a.sites_per_10k == pytest.approx(a_sites * 10_000 / pa)
        assert not a.uncovered
        # B has no working site inside (uncovered) though all its located people are covered
        # from across the border.
        assert b.uncovered
        assert (b.locality_pop, b.covered_pop, b.covered_pct_localities) == (2400, 2400, 100.0)
        assert b.uncovered_pop == pb - 2400
        # C: census population and no locality at all: still listed, nobody covered.
        assert (c.pop_2020, c.locality_count, c.locality_pop, c.covered_pop) == (pc, 0, 0, 0)
        assert c.covered_pct_census == 0.0 and c.covered_pct_localities is None
        assert (c.uncovered_pop, c.unlocated_pop, c.uncovered) == (pc, pc, True)
        assert c.priority_score == pytest.approx(2.0 * pc)

        nat = national_coverage(conn, run.id)
        assert nat.pop_2020 == 126_014_024
        assert (nat.municipalities, nat.sites, nat.working_sites, nat.covered_pop) == (
            2475,
            4,
            1,
            3400,
        )
        assert nat.uncovered_municipalities == 2474
        assert nat.uncovered_pop == 126_014_024 - 3400
        states = state_coverage(conn, run.id)
        assert len(states) == 32
        assert sum(s.pop_2020 or 0 for s in states) == 126_014_024
        sonora = state_coverage(conn, run.id, cve_ent="26")[0]
        assert (sonora.covered_pop, sonora.sites, sonora.uncovered_municipalities) == (
            3400,
            4,
            sonora.municipalities - 1,
        )


def test_radius_is_inclusive_at_exactly_r(engine: Engine, hand_made: dict[str, object]) -> None:
    run = compute_coverage(engine, _settings(), radius_km=3.0, as_of=AS_OF)
    with engine.connect() as conn:
        covered = {
            r.cvegeo: r.covered
            for r in uncovered_localities(
                conn, run.id, cve_ent="26", include_covered=True, limit=None
            )
            if r.cvegeo.startswith(("26030", "26047"))
        }
    assert covered == {
        "260309001": True,
        "260479002": True,  # exactly 3,000 m
        "260479003": False,
        "260309004": False,
    }


def test_without_probe_data_active_sites_are_working(
    engine: Engine, hand_made: dict[str, object]
) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM site_status"))
    run = compute_coverage(engine, _settings(), as_of=AS_OF)
    assert (run.basis, run.working_sites) == ("inventory", 2)
    with engine.connect() as conn:
        l4 = uncovered_localities(conn, run.id, mun_cvegeo=A, include_covered=True)
        by_key = {r.cvegeo: r for r in l4}
        assert by_key["260309004"].covered
        assert by_key["260309004"].nearest_site_key == "T-STALE"
        assert by_key["260309004"].nearest_distance_m == pytest.approx(100.0, abs=0.01)


def test_working_window_is_a_setting(engine: Engine, hand_made: dict[str, object]) -> None:
    run = compute_coverage(engine, _settings(coverage_working_hours=48), as_of=AS_OF)
    assert run.working_sites == 2


def test_a_suspended_site_is_not_working_whatever_it_answered_before(
    engine: Engine, hand_made: dict[str, object]
) -> None:
    """T answered 1 h ago, then its connection was suspended: L4, 100 m away, is uncovered."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE site_status SET last_ok_at = :ok FROM sites s "
                "WHERE s.id = site_status.site_id AND s.site_key = 'T-STALE'"
            ),
            {"ok": AS_OF - timedelta(hours=1)},
        )
    assert compute_coverage(engine, _settings(), as_of=AS_OF).working_sites == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE sites SET status = 'suspended' WHERE site_key = 'T-STALE'"))
    run = compute_coverage(engine, _settings(), as_of=AS_OF)
    assert run.working_sites == 1
    with engine.connect() as conn:
        l4 = {
            r.cvegeo: r
            for r in uncovered_localities(conn, run.id, mun_cvegeo=A, include_covered=True)
        }["260309004"]
    assert not l4.covered and l4.nearest_site_key == "S-BORDER"


def test_runs_are_kept_whole_and_pruned(engine: Engine) -> None:
    with engine.connect() as conn:
        assert latest_run(conn) is None
        with pytest.raises(NotFound, match="coverage compute"):
            get_run(conn)
    cfg = _settings(coverage_keep_runs=2)
    runs = [compute_coverage(engine, cfg, radius_km=r) for r in (5.0, 10.0, 2.0)]
    with engine.connect() as conn:
        assert [r.id for r in list_runs(conn)] == [runs[2].id, runs[1].id]
        assert latest_run(conn, radius_km=10.0) == runs[1]
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM coverage_municipality WHERE run_id = :old), "
                "(SELECT count(*) FROM coverage_locality WHERE run_id = :old), "
                "(SELECT count(*) FROM coverage_municipality WHERE run_id = :new), "
                "(SELECT count(*) FROM coverage_locality WHERE run_id = :new)"
            ),
            {"old": runs[0].id, "new": runs[2].id},
        ).one()
        assert tuple(counts) == (0, 0, 2475, 50_514)
        with pytest.raises(NotFound, match="pruned"):
            get_run(conn, runs[0].id)
        # No site at all: nobody is covered, every municipality is uncovered, nothing crashes.
        nat = national_coverage(conn, runs[2].id)
        assert (nat.covered_pop, nat.uncovered_municipalities) == (0, 2475)
        assert nat.covered_pct_census == 0.0
        assert nat.locality_pop == 121_487_291


def test_bad_radius_and_pages_are_clear_errors(engine: Engine) -> None:
    for bad in (0.0, -1.0, 500.0):
        with pytest.raises(InvalidInput, match="radius"):
            compute_coverage(engine, _settings(), radius_km=bad)
    run = compute_coverage(engine, _settings())
    with engine.connect() as conn:
        with pytest.raises(InvalidInput, match="order"):
            municipality_coverage(conn, run.id, order="nope")
        with pytest.raises(InvalidInput, match="after"):
            municipality_coverage(conn, run.id, after="99999")
