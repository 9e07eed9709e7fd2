"""Search against PostGIS: bbox, nearest, radius, codes, vocabulary, text, keyset paging."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from pyproj import Geod
from sqlalchemy import Engine, select, text

from core.db import make_engine
from core.errors import InvalidInput, NotFound
from core.settings import PROJECT_ROOT
from db.cluster import EmbeddedCluster
from sites.filters import SiteFilter
from sites.generator import generate_sites, write_sites_csv
from sites.importer import ImportOptions, import_file
from sites.models import sites_table
from sites.search import count_sites, get_site, ordered_sites, search_sites
from tests.conftest import _db_url, clone_database, drop_database
from tests.sites.conftest import DATA

ZOCALO = (-99.1332, 19.4326)
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def loaded(
    test_cluster: EmbeddedCluster, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, pd.DataFrame]]:
    """A database with 3,000 generated sites, the 8 fixture sites and two at known distances."""
    name = clone_database(test_cluster, template_db)
    engine = make_engine(_db_url(test_cluster, name))
    folder = tmp_path_factory.mktemp("search")
    generated = generate_sites(PROJECT_ROOT / "data" / "inegi", count=3000, seed=11)
    write_sites_csv(generated, folder / "generated.csv")
    north = GEOD.fwd(*ZOCALO, 0, 5000)
    east = GEOD.fwd(*ZOCALO, 90, 12000)
    (folder / "distances.csv").write_text(
        "site_key,name,category,lat,lon,status\n"
        f"DIST-5KM,Cinco kilómetros al norte,community,{north[1]!r},{north[0]!r},active\n"
        f"DIST-12KM,Doce kilómetros al este,community,{east[1]!r},{east[0]!r},planned\n",
        encoding="utf-8",
    )
    for path in (folder / "generated.csv", DATA / "valid_utf8.csv", folder / "distances.csv"):
        report = import_file(engine, path, options=ImportOptions(changed_by="test"))
        assert report.errors == [], report.errors[:3]
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(
                text(
                    "SELECT id, site_key, name, category, status, mun_cvegeo, cve_ent, provider,"
                    " technology, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM sites ORDER BY id"
                )
            )
            .mappings()
            .all()
        )
    yield engine, frame
    engine.dispose()
    drop_database(test_cluster, name)


def _keys(engine: Engine, flt: SiteFilter, limit: int = 10_000) -> list[str]:
    with engine.connect() as conn:
        return [s.site_key for s in search_sites(conn, flt, limit=limit).data]


def test_bbox_matches_the_coordinates(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    box = (-100.5, 19.0, -98.5, 20.0)
    inside = frame[
        frame.lon.between(box[0], box[2]) & frame.lat.between(box[1], box[3])
    ].site_key.tolist()
    assert len(inside) > 50
    assert _keys(engine, SiteFilter(bbox=box)) == inside


def test_nearest_is_ordered_by_geodesic_distance(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    point = (-96.7253, 17.0606)  # Oaxaca de Juárez
    _, _, metres = GEOD.inv(
        np.full(len(frame), point[0]), np.full(len(frame), point[1]), frame.lon, frame.lat
    )
    expected = frame.assign(m=metres).sort_values(["m", "id"]).head(15)
    with engine.connect() as conn:
        page = search_sites(conn, SiteFilter(near=point, nearest=15))
    assert [s.site_key for s in page.data] == expected.site_key.tolist()
    assert page.next_after is None
    for site, want in zip(page.data, expected.m, strict=True):
        assert site.distance_m == pytest.approx(want, abs=0.01)


def test_nearest_with_a_category(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    health = frame[frame.category == "health"]
    _, _, metres = GEOD.inv(
        np.full(len(health), ZOCALO[0]), np.full(len(health), ZOCALO[1]), health.lon, health.lat
    )
    expected = health.assign(m=metres).sort_values(["m", "id"]).head(5).site_key.tolist()
    assert _keys(engine, SiteFilter(near=ZOCALO, nearest=5, category=["salud"])) == expected


def test_radius_with_points_at_known_distances(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, _ = loaded
    flt = SiteFilter(near=ZOCALO, radius_km=5.001, category=["community"], status=["active"])
    with engine.connect() as conn:
        page = search_sites(conn, flt)
    found = {s.site_key: s.distance_m for s in page.data}
    assert found["DIST-5KM"] == pytest.approx(5000, abs=0.01)
    assert "DIST-12KM" not in found
    assert "DIST-5KM" not in _keys(engine, SiteFilter(near=ZOCALO, radius_km=4.999))
    twelve = _keys(engine, SiteFilter(near=ZOCALO, radius_km=12.001, site_key=["DIST-12KM"]))
    assert twelve == ["DIST-12KM"]
    assert _keys(engine, SiteFilter(near=ZOCALO, radius_km=11.999, site_key=["DIST-12KM"])) == []


def test_codes_and_vocabulary(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    for flt, mask in (
        (SiteFilter(municipality=["9015"]), frame.mun_cvegeo == "09015"),
        (SiteFilter(state=["20", "7"]), frame.cve_ent.isin(["20", "07"])),
        (
            SiteFilter(category=["school", "gobierno"]),
            frame.category.isin(["school", "government"]),
        ),
        (SiteFilter(status="suspended,retired"), frame.status.isin(["suspended", "retired"])),
        (SiteFilter(technology=["satelital"]), frame.technology == "satellite"),
        (SiteFilter(provider=["telmex"]), frame.provider == "Telmex"),
        (
            SiteFilter(state=["15"], category=["school"], technology=["fiber"]),
            (frame.cve_ent == "15") & (frame.category == "school") & (frame.technology == "fiber"),
        ),
    ):
        expected = frame[mask].site_key.tolist()
        assert expected, flt
        assert _keys(engine, flt) == expected, flt
        with engine.connect() as conn:
            assert count_sites(conn, flt) == len(expected)


def test_text_matches_parts_of_names_and_keys_and_near_misses(
    loaded: tuple[Engine, pd.DataFrame],
) -> None:
    engine, _ = loaded
    assert _keys(engine, SiteFilter(text="DPR0001")) == ["09DPR0001A"]
    assert "MXC-CI-22-000004" in _keys(engine, SiteFilter(text="matematicas"))
    typo = _keys(engine, SiteFilter(text="Biblioteca Publica Monterey"))
    assert "MXC-EP-19-000001" in typo
    assert _keys(engine, SiteFilter(text="100%_")) == []  # LIKE wildcards are literal


def test_keyset_pages_cover_everything_once_in_id_order(
    loaded: tuple[Engine, pd.DataFrame],
) -> None:
    engine, frame = loaded
    flt = SiteFilter(category=["school"])
    seen: list[int] = []
    after: int | None = None
    with engine.connect() as conn:
        while True:
            page = search_sites(conn, flt, after_id=after, limit=250)
            seen += [s.id for s in page.data]
            if page.next_after is None:
                break
            after = page.next_after
            assert page.count == 250
    assert seen == sorted(set(seen))
    assert seen == frame[frame.category == "school"].id.tolist()


def test_results_never_carry_secrets(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, _ = loaded
    with engine.connect() as conn:
        page = search_sites(conn, SiteFilter(), limit=5000)
        site = get_site(conn, "OCSSA000123")
    dump = page.model_dump_json() + site.model_dump_json()
    for secret in ("s3cret-comm", "authkey-0002", "privkey-0002", "mxc-monitor", "mxc-"):
        assert secret not in dump
    assert site.snmp_credentials is True
    assert site.mun_cvegeo == "20067" and site.municipality == "Oaxaca de Juárez"
    assert site.state == "Oaxaca"


def test_get_site_and_bad_requests(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    with engine.connect() as conn:
        first = int(frame.id.iloc[0])
        assert get_site(conn, first).id == first
        with pytest.raises(NotFound, match="NOPE"):
            get_site(conn, "NOPE")
        with pytest.raises(InvalidInput, match="cannot page a nearest-N"):
            search_sites(conn, SiteFilter(near=ZOCALO, nearest=3), after_id=5)
        with pytest.raises(InvalidInput, match="limit"):
            search_sites(conn, SiteFilter(), limit=0)
    for bad in (
        {"radius_km": 3},
        {"bbox": (10, 10, 5, 5)},
        {"category": ["cine"]},
        {"state": ["Oaxaca"]},
        {"text": " a "},
    ):
        with pytest.raises(ValueError):
            SiteFilter(**bad)


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (SiteFilter(near=ZOCALO, nearest=10), "ix_sites_geog"),
        (SiteFilter(near=ZOCALO, radius_km=3), "ix_sites_geog"),
        (SiteFilter(bbox=(-99.2, 19.3, -99.0, 19.5)), "ix_sites_geom"),
        (SiteFilter(text="juarez"), "ix_sites_name_trgm"),
        (SiteFilter(municipality=["09015"]), "ix_sites_mun"),
        (SiteFilter(state=["09"]), "ix_sites_ent"),
    ],
)
def test_each_search_can_use_its_index(
    loaded: tuple[Engine, pd.DataFrame], flt: SiteFilter, index: str
) -> None:
    engine, _ = loaded
    # The filter's expressions must match the index expressions; whether the planner picks
    # the index at a given size is its call, so sequential scans are switched off here.
    query = ordered_sites(flt) if flt.by_distance else select(sites_table.c.id).where(flt.where())
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled.string}", compiled.params)
        )
    assert index in plan, plan


def test_export_query_is_the_search_order(loaded: tuple[Engine, pd.DataFrame]) -> None:
    engine, frame = loaded
    with engine.connect() as conn:
        ids = [r.id for r in conn.execute(ordered_sites(SiteFilter(state=["09"])))]
    assert ids == frame[frame.cve_ent == "09"].id.tolist()


@pytest.mark.parametrize("window", [1, 7, 60, 5000])
def test_text_pages_found_in_steps_are_the_id_ordered_pages(
    loaded: tuple[Engine, pd.DataFrame], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Window first, then the trigram index: every page equals the plain id-ordered query."""
    engine, _ = loaded
    monkeypatch.setattr("sites.search.TEXT_WINDOW", window)
    filters = [
        SiteFilter(text="escuela"),  # dense among the first ids
        SiteFilter(text="salud"),  # health units: a later stretch of ids
        SiteFilter(text="juarez"),
        SiteFilter(text="DPR"),  # key parts
        SiteFilter(text="Biblioteca Publica Monterey"),  # near misses only (<%)
        SiteFilter(text="centro", category=["health"], state=["09", "15", "21"]),
        SiteFilter(text="zzzqqq"),
    ]
    with engine.connect() as conn:
        for flt in filters:
            expected = [r.id for r in conn.execute(ordered_sites(flt))]
            # Small pages cross the window's edge often; the first 30 of them are enough.
            for limit, pages in ((1, 30), (3, 30), (40, None)):
                seen: list[int] = []
                after: int | None = None
                while pages is None or len(seen) < limit * pages:
                    page = search_sites(conn, flt, after_id=after, limit=limit)
                    seen += [s.id for s in page.data]
                    if page.next_after is None:
                        break
                    assert page.count == limit
                    after = page.next_after
                wanted = expected if pages is None else expected[: limit * pages]
                assert seen == wanted, (flt.text, limit)
