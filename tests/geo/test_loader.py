"""The INEGI loader reproduces the published totals, is idempotent and fails clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.errors import DataFileError
from core.settings import PROJECT_ROOT
from geo.loader import load_geography, read_localities

INEGI = PROJECT_ROOT / "data" / "inegi"


def test_template_reproduces_the_census_totals(shared_engine: Engine) -> None:
    with shared_engine.connect() as conn:
        count, pop = conn.execute(text("SELECT count(*), sum(pop_2020) FROM municipalities")).one()
        assert (count, pop) == (2475, 126_014_024)
        missing = (
            conn.execute(
                text("SELECT cvegeo FROM municipalities WHERE pop_2020 IS NULL ORDER BY 1")
            )
            .scalars()
            .all()
        )
        assert missing == ["02007", "04013"]
        loc_count, loc_pop = conn.execute(
            text("SELECT count(*), sum(pop_2020) FROM localities")
        ).one()
        assert loc_pop == 121_487_291
        assert loc_count == 50_763 - 249  # the 155 without coordinates are among the 249
        states = conn.execute(
            text("SELECT count(*), sum(pop_2020) FROM states WHERE geom IS NOT NULL")
        ).one()
        assert tuple(states) == (32, 126_014_024)
        name = conn.execute(text("SELECT name FROM municipalities WHERE cvegeo = '03002'")).scalar()
        assert name == "Mulegé"
        invalid = conn.execute(
            text("SELECT count(*) FROM municipalities WHERE NOT ST_IsValid(geom)")
        ).scalar()
        assert invalid == 0


def test_state_outline_contains_its_capital(shared_engine: Engine) -> None:
    with shared_engine.connect() as conn:
        cve = (
            conn.execute(
                text(
                    "SELECT s.cve_ent FROM states s, localities l WHERE l.cvegeo = '220140001' "
                    "AND ST_Intersects(s.geom, l.geom)"
                )
            )
            .scalars()
            .all()
        )
        assert cve == ["22"]  # Santiago de Querétaro lies in Querétaro only


def test_second_load_changes_nothing(engine: Engine) -> None:
    report = load_geography(engine, INEGI)
    assert report.changed == 0
    assert report.municipalities.unchanged == 2475
    assert report.localities.unchanged == 50_514


def test_changed_locality_updates_only_that_row(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "inegi"
    shutil.copytree(INEGI, folder)
    csv_path = folder / "localidades.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[1].startswith("010010001,")
    fields = lines[1].rstrip("\n").split(",")
    fields[9] = str(int(fields[9]) + 7)
    lines[1] = ",".join(fields) + "\n"
    csv_path.write_text("".join(lines), encoding="utf-8")
    report = load_geography(engine, folder)
    assert (report.localities.inserted, report.localities.updated) == (0, 1)
    assert report.municipalities.updated == 0 and report.states.updated == 0
    with engine.connect() as conn:
        pop = conn.execute(
            text("SELECT pop_2020 FROM localities WHERE cvegeo = '010010001'")
        ).scalar()
    assert pop == 863_893 + 7


def test_localities_without_coordinates_or_population_are_reported() -> None:
    good, skipped = read_localities(INEGI / "localidades.csv")
    reasons: dict[str, int] = {}
    for row in skipped:
        for reason in row.reason.split("; "):
            reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == {"no coordinates": 155, "no population": 249}
    assert len(good) + len(skipped) == 50_763
    assert all(row.line >= 2 for row in skipped)


def test_missing_file_names_the_file(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "inegi"
    shutil.copytree(INEGI, folder)
    (folder / "localidades.csv").unlink()
    with pytest.raises(DataFileError, match=r"localidades\.csv is missing"):
        load_geography(engine, folder)


def test_corrupt_geopackage_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "inegi"
    shutil.copytree(INEGI, folder)
    gpkg = folder / "municipios.gpkg"
    gpkg.write_bytes(gpkg.read_bytes()[:4096])
    with pytest.raises(DataFileError, match="could not be read as a GeoPackage"):
        load_geography(engine, folder)
    with engine.connect() as conn:  # nothing half-written
        assert conn.execute(text("SELECT count(*) FROM municipalities")).scalar() == 2475


def test_missing_column_is_named(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "inegi"
    shutil.copytree(INEGI, folder)
    path = folder / "localidades.csv"
    text_ = path.read_text(encoding="utf-8").replace("POB2020", "POBLACION", 1)
    path.write_text(text_, encoding="utf-8")
    with pytest.raises(DataFileError, match="lacks column\\(s\\) POB2020"):
        load_geography(engine, folder)


def _planner_rows(engine: Engine, table: str) -> float:
    with engine.connect() as conn:
        return float(
            conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar_one()
        )


def test_a_load_leaves_statistics_for_the_import_that_follows(engine: Engine) -> None:
    """An import right after a first load is planned for the loaded tables, not empty ones."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE localities"))
    assert _planner_rows(engine, "localities") < 0  # never analysed, as after a first load
    report = load_geography(engine, INEGI)
    assert report.localities.inserted == 50_514
    assert _planner_rows(engine, "localities") == 50_514
    assert _planner_rows(engine, "municipalities") == 2475
