"""Coverage checked against an independent geopandas computation on a real state (Querétaro).

Inputs (the real localities and municipalities, generated sites, planted probe status) are
read from the database; everything derived is recomputed here with geopandas (sjoin and
sjoin_nearest in EPSG:6372) and pyproj's geodesic, then compared with what PostGIS stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Geod
from sqlalchemy import Engine, text

from core.settings import Settings
from geo.coverage import compute_coverage
from tests.maps.sitedata import insert_generated_sites, plant_status

STATE = "22"
AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
R_M = 5000.0
GEOD = Geod(ellps="WGS84")


@pytest.fixture
def queretaro(engine: Engine) -> int:
    """Generated sites of Querétaro with planted status; some lack their municipality."""
    n = insert_generated_sites(engine, count=101_322, seed=7, states=(STATE,))
    plant_status(engine, as_of=AS_OF)
    with engine.begin() as conn:
        # The importer may leave a municipality empty; coverage must place those sites itself.
        conn.execute(text("UPDATE sites SET mun_cvegeo = NULL WHERE id % 7 = 0"))
        conn.execute(text("UPDATE sites SET status = 'retired' WHERE id % 31 = 0"))
    return n


def test_coverage_matches_geopandas_on_queretaro(engine: Engine, queretaro: int) -> None:
    assert queretaro > 500
    run = compute_coverage(engine, Settings(), as_of=AS_OF)
    with engine.connect() as conn:
        locs = gpd.read_postgis(
            text(
                "SELECT cvegeo, mun_cvegeo, pop_2020, geom FROM localities "
                "WHERE cve_ent = :e ORDER BY cvegeo"
            ),
            conn,
            params={"e": STATE},
        )
        munis = gpd.read_postgis(
            text("SELECT cvegeo, pop_2020, geom FROM municipalities WHERE cve_ent = :e"),
            conn,
            params={"e": STATE},
        )
        sites = gpd.read_postgis(
            text(
                "SELECT s.id, s.site_key, s.status, s.category, st.last_ok_at, s.geom "
                "FROM sites s LEFT JOIN site_status st ON st.site_id = s.id"
            ),
            conn,
        )
        stored_locs = pd.read_sql(
            text(
                "SELECT cvegeo, nearest_site_id, nearest_distance_m, covered "
                "FROM coverage_locality WHERE run_id = :r AND cve_ent = :e"
            ),
            conn,
            params={"r": run.id, "e": STATE},
        ).set_index("cvegeo")
        stored_munis = pd.read_sql(
            text("SELECT * FROM coverage_municipality WHERE run_id = :r AND cve_ent = :e"),
            conn,
            params={"r": run.id, "e": STATE},
        ).set_index("cvegeo")
        stored_state = conn.execute(
            text("SELECT * FROM coverage_state WHERE run_id = :r AND cve_ent = :e"),
            {"r": run.id, "e": STATE},
        ).one()

    counted = sites[sites["status"] != "retired"]
    probed = counted[counted["status"].isin(["active", "installed"])]
    working = probed[probed["last_ok_at"] >= pd.Timestamp(AS_OF - timedelta(hours=24))]
    assert run.working_sites == len(working)
    assert 0 < len(working) < len(counted)

    # Nearest working site in the projected CRS, then its exact geodesic distance.
    locs_m = locs.to_crs(6372)
    working_m = working[["id", "geom"]].to_crs(6372)
    nearest = gpd.sjoin_nearest(locs_m, working_m, how="left", distance_col="planar_m")
    nearest = nearest.sort_values(["cvegeo", "id"]).drop_duplicates("cvegeo").set_index("cvegeo")
    site_xy = working.set_index("id").geometry
    chosen = site_xy.loc[nearest["id"].to_numpy()]
    loc_xy = locs.set_index("cvegeo").geometry.loc[nearest.index]
    _, _, geodesic = GEOD.inv(loc_xy.x.to_numpy(), loc_xy.y.to_numpy(), chosen.x, chosen.y)
    nearest["geodesic_m"] = geodesic
    nearest["covered"] = nearest["geodesic_m"] <= R_M + 0.001

    both = stored_locs.merge(
        nearest[["id", "planar_m", "geodesic_m", "covered"]],
        left_index=True,
        right_index=True,
        how="left",
        suffixes=("", "_gp"),
    )
    assert len(both) == len(locs) > 900
    same_site = both["nearest_site_id"] == both["id"]
    assert same_site.mean() > 0.995
    # The same nearest site gives the same distance to the tenth of a millimetre; where the
    # projection ranked two almost equidistant sites differently, PostGIS's is no farther.
    np.testing.assert_allclose(
        both.loc[same_site, "nearest_distance_m"], both.loc[same_site, "geodesic_m"], atol=1e-4
    )
    assert (both["nearest_distance_m"] <= both["geodesic_m"] + 1e-4).all()
    # EPSG:6372 distances differ from geodesic ones by the projection's scale (< 1 % here).
    ratio = both["planar_m"] / both["geodesic_m"]
    assert ratio.between(0.99, 1.01).all()
    assert (both["covered"] == both["covered_gp"]).all()
    # A purely planar sjoin (dwithin R in EPSG:6372) agrees except within the scale band.
    planar_hits = gpd.sjoin(locs_m, working_m, predicate="dwithin", distance=R_M)
    planar_covered = locs_m["cvegeo"].isin(planar_hits["cvegeo"]).to_numpy()
    disagree = both["covered"].to_numpy() != planar_covered
    assert (np.abs(both["geodesic_m"].to_numpy()[disagree] - R_M) < 0.01 * R_M).all()
    assert both["covered"].sum() > 0 and (~both["covered"]).sum() > 0

    # Sites per municipality by a spatial join (the rule for sites without a municipality),
    # working sites, and covered population per municipality.
    in_muni = gpd.sjoin(counted, munis[["cvegeo", "geom"]], predicate="intersects")
    in_muni = in_muni.sort_values(["id", "cvegeo"]).drop_duplicates("id")
    expect = pd.DataFrame(index=munis["cvegeo"].sort_values())
    expect["sites"] = in_muni.groupby("cvegeo").size()
    expect["schools"] = in_muni[in_muni["category"] == "school"].groupby("cvegeo").size()
    expect["active"] = in_muni[in_muni["status"] == "active"].groupby("cvegeo").size()
    expect["working"] = in_muni[in_muni["id"].isin(working["id"])].groupby("cvegeo").size()
    cov = locs.set_index("cvegeo").join(nearest["covered"])
    expect["locality_pop"] = cov.groupby("mun_cvegeo")["pop_2020"].sum()
    expect["covered_pop"] = cov[cov["covered"]].groupby("mun_cvegeo")["pop_2020"].sum()
    expect = expect.fillna(0).astype("int64")
    expect["pop"] = munis.set_index("cvegeo")["pop_2020"]
    got = stored_munis.loc[expect.index]
    assert (got["sites"] == expect["sites"]).all()
    assert (got["sites_school"] == expect["schools"]).all()
    assert (got["active_sites"] == expect["active"]).all()
    assert (got["working_sites"] == expect["working"]).all()
    assert (got["locality_pop"] == expect["locality_pop"]).all()
    assert (got["covered_pop"] == expect["covered_pop"]).all()
    np.testing.assert_allclose(
        got["covered_pct_census"], 100 * expect["covered_pop"] / expect["pop"], rtol=1e-12
    )
    np.testing.assert_allclose(
        got["sites_per_10k"], 1e4 * expect["sites"] / expect["pop"], rtol=1e-12
    )
    uncovered = expect["pop"] - expect["covered_pop"]
    np.testing.assert_allclose(
        got["priority_score"], uncovered * (1 + uncovered / expect["pop"]), rtol=1e-12
    )
    assert (got["uncovered"] == (expect["working"] == 0)).all()
    assert stored_state.sites == expect["sites"].sum()
    assert stored_state.covered_pop == expect["covered_pop"].sum()
    assert stored_state.pop_2020 == expect["pop"].sum()
