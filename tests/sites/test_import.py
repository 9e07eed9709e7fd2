"""Importing: encodings and formats, idempotent upserts, history, secrets, partial files."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.errors import SetupError
from sites.importer import ASSIGN_MUNICIPALITIES, ImportOptions, import_table
from sites.readers import read_source
from tests.sites.conftest import DATA, run_import, site_rows
from tests.sites.data.build_fixtures import EXPECTED_MUNICIPALITY


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "count"),
    [
        ("valid_utf8.csv", "utf-8", ",", 8),
        ("valid_bom_semicolon.csv", "utf-8-sig", ";", 4),
        ("valid_cp1252.csv", "cp1252", ",", 3),
        ("valid_semicolon_utf8.csv", "utf-8", ";", 2),
    ],
)
def test_csv_encodings_and_delimiters_are_detected(
    db: Engine, name: str, encoding: str, delimiter: str, count: int
) -> None:
    report = run_import(db, DATA / name)
    assert (report.encoding, report.delimiter) == (encoding, delimiter)
    assert report.errors == [] and report.written
    assert (report.inserted, report.updated, report.unchanged) == (count, 0, 0)
    again = run_import(db, DATA / name)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, count)


def test_cp1252_text_arrives_intact(db: Engine) -> None:
    run_import(db, DATA / "valid_cp1252.csv")
    rows = {r["site_key"]: r for r in site_rows(db)}
    assert rows["31DPR0999Q"]["name"] == "Escuela Primaria “Niños Héroes”"
    assert rows["22SSA001234"]["name"] == "Clínica Ñuu Savi"
    assert rows["22SSA001234"]["category"] == "health"  # "clínica"
    assert rows["22SSA001234"]["technology"] == "dsl"  # "cobre"
    assert rows["MXC-GB-20-000099"]["technology"] == "microwave"  # "radioenlace"
    assert rows["31DPR0999Q"]["access_notes"] == "Equipo en la dirección"


def test_spanish_headers_values_dates_and_units(db: Engine) -> None:
    run_import(db, DATA / "valid_bom_semicolon.csv")
    rows = {r["site_key"]: r for r in site_rows(db, "*, installed_on::text AS day")}
    toluca = rows["15DJN0101B"]
    assert (toluca["category"], toluca["technology"], toluca["status"]) == (
        "school",
        "fiber",
        "active",
    )
    assert toluca["day"] == "2021-03-15" and toluca["mun_cvegeo"] == "15106"
    puebla = rows["PLSSA000777"]
    assert puebla["bw_down_mbps"] == 10.5 and puebla["status"] == "installed"
    assert rows["MXC-EP-30-000010"]["category"] == "public_space"
    leon = rows["MXC-CI-11-000011"]
    assert (leon["category"], leon["technology"], leon["bw_down_mbps"]) == (
        "research",
        "satellite",
        1000.0,
    )
    with db.connect() as conn:
        community = conn.execute(
            text(
                "SELECT sec.snmp_community FROM site_secrets sec "
                "JOIN sites s ON s.id = sec.site_id WHERE s.site_key = '15DJN0101B'"
            )
        ).scalar_one()
    assert community == "comm-es-1"


def test_decimal_commas_in_semicolon_files(db: Engine) -> None:
    run_import(db, DATA / "valid_semicolon_utf8.csv")
    rows = {r["site_key"]: r for r in site_rows(db, "site_key, ST_Y(geom) AS lat, category")}
    assert rows["09DES0002C"]["lat"] == 19.4326
    assert rows["09SSA000555"]["category"] == "health"  # "hospital"


@pytest.mark.parametrize("name", ["sites.geojson", "sites.gpkg", "shp/sites.shp"])
def test_spatial_formats_import_like_the_csv(db: Engine, name: str) -> None:
    from_csv = run_import(db, DATA / "valid_utf8.csv")
    assert from_csv.inserted == 8
    report = run_import(db, DATA / name)
    assert report.errors == [] and report.format in ("geojson", "gpkg", "shp")
    # The same sites, same values: nothing to change.
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 8)


def test_spatial_formats_into_an_empty_inventory(db: Engine) -> None:
    report = run_import(db, DATA / "shp" / "sites.shp")
    assert report.inserted == 8
    rows = {r["site_key"]: r for r in site_rows(db)}
    assert {k: r["mun_cvegeo"] for k, r in rows.items()} == EXPECTED_MUNICIPALITY
    tijuana = rows["MXC-CC-02-000003"]
    assert (tijuana["wan_if_name"], tijuana["wan_if_index"]) == ("GigabitEthernet0/1", None)
    assert rows["OCSSA000123"]["contact_phone"] == "951 123 4567"  # contact_ph in the .dbf


def test_municipality_and_state_come_from_coordinates(db: Engine) -> None:
    run_import(db, DATA / "valid_utf8.csv")
    rows = site_rows(db, "site_key, mun_cvegeo, cve_ent")
    assert {r["site_key"]: r["mun_cvegeo"] for r in rows} == EXPECTED_MUNICIPALITY
    assert all(r["cve_ent"] == r["mun_cvegeo"][:2] for r in rows)


def _rewrite(source: Path, target: Path, changes: dict[str, dict[str, str]]) -> None:
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.update(changes.get(row["site_key"], {}))
    with target.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_changed_row_updates_only_that_site_and_writes_history(
    db: Engine, tmp_path: Path
) -> None:
    run_import(db, DATA / "valid_utf8.csv", changed_by="ana")
    before = {r["site_key"]: r for r in site_rows(db)}
    changed = tmp_path / "changed.csv"
    _rewrite(
        DATA / "valid_utf8.csv",
        changed,
        {
            "YNSSA000045": {
                "provider": "Totalplay",
                "bw_down_mbps": "500",
                "lat": "20.9700",
                "snmp_community": "new-secret-xyz",
                "contact_name": "",
            }
        },
    )
    report = run_import(db, changed, changed_by="beto")
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 7)
    after = {r["site_key"]: r for r in site_rows(db)}
    for key in before:
        if key != "YNSSA000045":
            assert after[key] == before[key]
    merida = after["YNSSA000045"]
    assert (merida["provider"], merida["bw_down_mbps"], merida["contact_name"]) == (
        "Totalplay",
        500.0,
        None,
    )
    assert merida["updated_at"] > before["YNSSA000045"]["updated_at"]
    with db.connect() as conn:
        history = conn.execute(
            text(
                "SELECT changed_by, action, changes FROM site_changes "
                "WHERE site_key = 'YNSSA000045' ORDER BY id"
            )
        ).all()
        secret = conn.execute(
            text("SELECT snmp_community FROM site_secrets WHERE site_id = :i"),
            {"i": merida["id"]},
        ).scalar_one()
    assert [(h.changed_by, h.action) for h in history] == [("ana", "insert"), ("beto", "update")]
    assert history[0].changes == {"source": "valid_utf8.csv"}
    assert history[1].changes == {
        "provider": ["Telmex", "Totalplay"],
        "bw_down_mbps": [200, 500],
        "lat": [20.9674, 20.97],
        "contact_name": ["Ana Díaz Reyes", None],
        "snmp_community": "changed",
    }
    assert secret == "new-secret-xyz"
    assert "new-secret-xyz" not in str(history) and "s3cret" not in str(history)


def test_moving_a_site_across_a_border_reassigns_its_municipality(
    db: Engine, tmp_path: Path
) -> None:
    run_import(db, DATA / "valid_utf8.csv")
    moved = tmp_path / "moved.csv"
    # From Guadalajara's centre to Zapopan's (14120).
    _rewrite(
        DATA / "valid_utf8.csv", moved, {"MXC-GB-14-000002": {"lat": "20.7214", "lon": "-103.3918"}}
    )
    report = run_import(db, moved)
    assert report.updated == 1
    with db.connect() as conn:
        changes = conn.execute(
            text("SELECT changes FROM site_changes WHERE action = 'update'")
        ).scalar_one()
    assert changes["mun_cvegeo"] == ["14039", "14120"]
    assert set(changes) == {"lat", "lon", "mun_cvegeo"}


def test_a_partial_file_changes_only_its_columns(db: Engine, tmp_path: Path) -> None:
    run_import(db, DATA / "valid_utf8.csv")
    partial = tmp_path / "partial.csv"
    partial.write_text(
        "clave,nombre,categoria,latitud,longitud,proveedor\n"
        "OCSSA000123,Centro de Salud Oaxaca de Juárez,salud,17.0606,-96.7253,Telmex\n",
        encoding="utf-8",
    )
    report = run_import(db, partial)
    assert (report.updated, report.unchanged) == (1, 0)
    rows = {r["site_key"]: r for r in site_rows(db)}
    oaxaca = rows["OCSSA000123"]
    assert oaxaca["provider"] == "Telmex"
    # Columns the file does not have keep their values (secrets included).
    assert (oaxaca["technology"], oaxaca["snmp_version"], str(oaxaca["mgmt_ip"])) == (
        "microwave",
        "3",
        "10.20.0.1",
    )
    with db.connect() as conn:
        user = conn.execute(
            text("SELECT v3_user FROM site_secrets WHERE site_id = :i"), {"i": oaxaca["id"]}
        ).scalar_one()
    assert user == "mxc-monitor"


def test_an_empty_status_keeps_the_stored_one(db: Engine, tmp_path: Path) -> None:
    run_import(db, DATA / "valid_utf8.csv")
    blank = tmp_path / "blank_status.csv"
    _rewrite(DATA / "valid_utf8.csv", blank, {key: {"status": ""} for key in EXPECTED_MUNICIPALITY})
    report = run_import(db, blank)
    assert (report.updated, report.unchanged) == (0, 8)
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("site_key,name,category,lat,lon,status\nN-1,Nuevo,school,19.4,-99.1,\n")
    run_import(db, fresh)
    assert {r["site_key"]: r["status"] for r in site_rows(db)}["N-1"] == "planned"


def test_v3_without_a_user_column_uses_the_stored_user(db: Engine, tmp_path: Path) -> None:
    run_import(db, DATA / "valid_utf8.csv")
    path = tmp_path / "v3.csv"
    path.write_text(
        "site_key,name,category,lat,lon,snmp_version\n"
        "OCSSA000123,Centro de Salud Oaxaca de Juárez,health,17.0606,-96.7253,3\n"
        "09DPR0001A,Escuela Primaria Benito Juárez,school,19.4326,-99.1332,3\n",
        encoding="utf-8",
    )
    report = run_import(db, path, mode="skip-invalid")
    (error,) = report.errors
    assert (error.site_key, error.column) == ("09DPR0001A", "snmp_version")
    assert "no v3_user" in error.message
    assert report.unchanged == 1


def test_dry_run_writes_nothing(db: Engine) -> None:
    report = run_import(db, DATA / "valid_utf8.csv", dry_run=True)
    assert not report.written and report.errors == []
    assert site_rows(db) == []


def test_nothing_is_half_written_when_the_write_fails(db: Engine, tmp_path: Path) -> None:
    # A row the database itself refuses (a v3 auth protocol outside its CHECK) fails the
    # statement: the whole import rolls back, including rows that were fine.
    path = tmp_path / "bad_secret.csv"
    path.write_text(
        "site_key,name,category,lat,lon,snmp_version,v3_user,v3_auth_proto,v3_auth_key\n"
        "B-1,Uno,school,19.4326,-99.1332,2c,,,\n"
        "B-2,Dos,school,19.4326,-99.1332,3,u,SHA,12345678\n",
        encoding="utf-8",
    )
    run_import(db, path)
    assert len(site_rows(db)) == 2
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE sites ADD CONSTRAINT t_no_three CHECK (name <> 'Tres')"))
    try:
        path.write_text(
            "site_key,name,category,lat,lon\n"
            "B-1,Uno cambiado,school,19.4326,-99.1332\n"
            "B-3,Tres,school,19.4326,-99.1332\n",
            encoding="utf-8",
        )
        with pytest.raises(Exception, match="t_no_three"):
            run_import(db, path)
        assert {r["site_key"]: r["name"] for r in site_rows(db)} == {"B-1": "Uno", "B-2": "Dos"}
    finally:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE sites DROP CONSTRAINT t_no_three"))


def test_concurrent_imports_of_the_same_file_do_not_clash(db: Engine) -> None:
    reports = []

    def work() -> None:
        reports.append(run_import(db, DATA / "valid_utf8.csv"))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.inserted for r in reports) == [0, 0, 8]
    assert sum(r.unchanged for r in reports) == 16
    assert len(site_rows(db)) == 8


def test_import_needs_the_geography(db: Engine) -> None:
    # Inside one transaction that the error rolls back, so the geography stays for others.
    with pytest.raises(SetupError, match="conectado geo load"), db.begin() as conn:
        conn.execute(text("DELETE FROM localities"))
        conn.execute(text("DELETE FROM municipalities"))
        import_table(conn, read_source(DATA / "valid_utf8.csv"), options=ImportOptions())
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM municipalities")).scalar_one() == 2475


def _analyze_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'sites'")
            ).scalar_one()
        )


def test_a_large_import_refreshes_the_planner_statistics(db: Engine) -> None:
    before = _analyze_count(db)
    run_import(db, DATA / "valid_utf8.csv")  # the whole (empty) inventory changes
    assert _analyze_count(db) == before + 1
    run_import(db, DATA / "valid_utf8.csv")  # nothing changes: no ANALYZE
    assert _analyze_count(db) == before + 1


def test_municipalities_drive_the_assignment_even_without_statistics(db: Engine) -> None:
    """Each polygon meets the points under its box (a prepared polygon is reused), whatever
    the planner knows: freshly loaded municipalities have no statistics yet."""
    with db.begin() as conn:
        # As right after a first geography load: no statistics for the municipalities.
        conn.execute(text("DELETE FROM pg_statistic WHERE starelid = 'municipalities'::regclass"))
        conn.execute(
            text("UPDATE pg_class SET reltuples = -1 WHERE oid = 'municipalities'::regclass")
        )
        conn.execute(
            text(
                "CREATE TEMP TABLE site_import ON COMMIT DROP AS "
                "SELECT row_number() OVER ()::integer AS row, geom FROM localities LIMIT 20000"
            )
        )
        conn.execute(text("CREATE INDEX ON site_import USING gist (geom)"))
        conn.execute(text("ANALYZE site_import (row)"))  # as the importer stages it
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {ASSIGN_MUNICIPALITIES}"))
        assigned = conn.execute(text(f"SELECT count(*) FROM ({ASSIGN_MUNICIPALITIES}) a"))
        inside = conn.execute(
            text(
                "SELECT count(DISTINCT p.row) FROM municipalities m "
                "JOIN site_import p ON ST_Intersects(m.geom, p.geom)"
            )
        )
        assert assigned.scalar_one() == inside.scalar_one() > 19_900  # a few lie on the coast
    assert "Seq Scan on municipalities" in plan, plan
    assert "Index Scan using site_import_geom_idx on site_import" in plan, plan
