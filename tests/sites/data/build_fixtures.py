"""Write the inventory test files of this folder (run once; the files are committed).

    .venv/bin/python tests/sites/data/build_fixtures.py

Coordinates are real places; the expected municipality of each is in EXPECTED_MUNICIPALITY.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from sites.vocabulary import PUBLIC_COLUMNS, SECRET_COLUMNS

HERE = Path(__file__).resolve().parent

# Every column the importer takes, secrets included (the fixtures exercise them all).
COLUMNS = [*PUBLIC_COLUMNS, *SECRET_COLUMNS]

# 8 valid sites, one per category at least, with every column used somewhere.
VALID = [
    [
        "09DPR0001A",
        "Escuela Primaria Benito Juárez",
        "school",
        "19.4326",
        "-99.1332",
        "Ciudad de México",
        "Plaza de la Constitución s/n, Centro",
        "Telmex",
        "fiber",
        "100",
        "50",
        "active",
        "2021-03-15",
        "María López Hernández",
        "55 1234 5678",
        "Entrada por la puerta lateral",
        "10.9.0.1",
        "2c",
        "161",
        "1",
        "",
        "http://10.9.0.1/",
        "s3cret-comm-0001",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "OCSSA000123",
        "Centro de Salud Oaxaca de Juárez",
        "health",
        "17.0606",
        "-96.7253",
        "Oaxaca de Juárez",
        "Calle Hidalgo 12",
        "CFE TEIT",
        "microwave",
        "30",
        "30",
        "active",
        "2020-07-01",
        "José Pérez Cruz",
        "951 123 4567",
        "",
        "10.20.0.1",
        "3",
        "161",
        "2",
        "",
        "http://10.20.0.1/",
        "",
        "mxc-monitor",
        "SHA256",
        "authkey-0002-secret",
        "AES",
        "privkey-0002-secret",
    ],
    [
        "YNSSA000045",
        "Hospital General de Mérida",
        "health",
        "20.9674",
        "-89.6243",
        "Mérida",
        "Calle 60 No. 491",
        "Telmex",
        "fiber",
        "200",
        "100",
        "installed",
        "2024-01-10",
        "Ana Díaz Reyes",
        "999 765 4321",
        "Rack en el sótano",
        "10.31.0.1",
        "2c",
        "161",
        "1",
        "",
        "http://10.31.0.1/",
        "s3cret-comm-0003",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "MXC-EP-19-000001",
        "Biblioteca Pública Monterrey",
        "public_space",
        "25.6714",
        "-100.309",
        "Monterrey",
        "Av. Constitución 1000",
        "Telcel",
        "cellular",
        "20",
        "10",
        "suspended",
        "2022-05-20",
        "Luis Gómez Torres",
        "81 2345 6789",
        "",
        "10.19.0.1",
        "2c",
        "161",
        "1",
        "",
        "http://10.19.0.1/",
        "s3cret-comm-0004",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "MXC-GB-14-000002",
        "Presidencia Municipal de Guadalajara",
        "government",
        "20.6767",
        "-103.3475",
        "Guadalajara",
        "Av. Hidalgo 400",
        "Telmex",
        "dsl",
        "20",
        "2",
        "active",
        "2019-11-30",
        "Rosa Flores Ruiz",
        "33 3456 7890",
        "",
        "10.14.0.1",
        "2c",
        "161",
        "3",
        "",
        "http://10.14.0.1/",
        "s3cret-comm-0005",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "MXC-CC-02-000003",
        "Centro Comunitario Tijuana",
        "community",
        "32.5149",
        "-117.0382",
        "Tijuana",
        "Calle Segunda 200",
        "Hughes",
        "satellite",
        "10",
        "2",
        "planned",
        "",
        "Pedro Ortiz Vázquez",
        "664 987 6543",
        "",
        "10.2.0.1",
        "2c",
        "161",
        "",
        "GigabitEthernet0/1",
        "http://10.2.0.1/",
        "s3cret-comm-0006",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "MXC-CI-22-000004",
        "Centro de Investigación en Matemáticas Querétaro",
        "research",
        "20.5888",
        "-100.3899",
        "Santiago de Querétaro",
        "Av. Universidad 5",
        "Axtel",
        "fiber",
        "1000",
        "1000",
        "active",
        "2023-02-01",
        "Elena Mendoza Aguilar",
        "442 111 2233",
        "",
        "10.22.0.1",
        "2c",
        "161",
        "1",
        "",
        "https://10.22.0.1/",
        "s3cret-comm-0007",
        "",
        "",
        "",
        "",
        "",
    ],
    [
        "07KPR0456Z",
        "Escuela Primaria Comunitaria San Cristóbal",
        "school",
        "16.737",
        "-92.6376",
        "San Cristóbal de las Casas",
        "Domicilio conocido",
        "Viasat",
        "satellite",
        "5",
        "1",
        "retired",
        "2019-06-15",
        "Jorge Jiménez Castillo",
        "967 222 3344",
        'Llevar "escalera"; camino de terracería, entrar en 4x4',
        "10.7.0.1",
        "2c",
        "161",
        "1",
        "",
        "http://10.7.0.1/",
        "s3cret-comm-0008",
        "",
        "",
        "",
        "",
        "",
    ],
]
EXPECTED_MUNICIPALITY = {
    "09DPR0001A": "09015",
    "OCSSA000123": "20067",
    "YNSSA000045": "31050",
    "MXC-EP-19-000001": "19039",
    "MXC-GB-14-000002": "14039",
    "MXC-CC-02-000003": "02004",
    "MXC-CI-22-000004": "22014",
    "07KPR0456Z": "07078",
}


def _csv_text(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def valid_utf8() -> None:
    (HERE / "valid_utf8.csv").write_text(_csv_text(COLUMNS, VALID), encoding="utf-8")


def bom_semicolon_spanish() -> None:
    """Excel-style UTF-8 with BOM, semicolons, Spanish headers and values, DD/MM/YYYY dates."""
    header = [
        "Clave",
        "Nombre",
        "Categoría",
        "Latitud",
        "Longitud",
        "Municipio",
        "Localidad",
        "Dirección",
        "Proveedor",
        "Tecnología",
        "Bajada (Mbps)",
        "Subida (Mbps)",
        "Estatus",
        "Fecha de instalación",
        "Teléfono",
        "IP",
        "Comunidad",
    ]
    rows = [
        [
            "15DJN0101B",
            "Jardín de Niños Sor Juana",
            "Escuela",
            "19.2826",
            "-99.6557",
            "Toluca",
            "Toluca de Lerdo",
            "Av. Morelos 5",
            "Totalplay",
            "Fibra óptica",
            "50",
            "25",
            "Activo",
            "15/03/2021",
            "722 123 4567",
            "10.15.0.1",
            "comm-es-1",
        ],
        [
            "PLSSA000777",
            "Centro de Salud Puebla",
            "Salud",
            "19.0414",
            "-98.2063",
            "114",
            "Heroica Puebla de Zaragoza",
            "Calle 5 de Mayo 10",
            "Telmex",
            "microondas",
            "10,5",
            "5",
            "Instalado",
            "01/12/2022",
            "222 765 4321",
            "10.21.0.1",
            "comm-es-2",
        ],
        [
            "MXC-EP-30-000010",
            "Plaza Principal de Xalapa",
            "Espacio público",
            "19.5438",
            "-96.9102",
            "Veracruz",
            "Xalapa-Enríquez",
            "Calle Enríquez s/n",
            "Altán Redes",
            "Celular",
            "20",
            "10",
            "activo",
            "2023-08-09",
            "228 333 4455",
            "10.30.0.1",
            "comm-es-3",
        ],
        [
            "MXC-CI-11-000011",
            "Centro de Investigación León",
            "Investigación",
            "21.1221",
            "-101.6840",
            "León",
            "León de los Aldama",
            "Blvd. López Mateos 1",
            "Starlink",
            "Satelital",
            "1 Gbps",
            "100",
            "Operando",
            "2024-04-30",
            "477 888 9900",
            "10.11.0.1",
            "comm-es-4",
        ],
    ]
    text = _csv_text(header, rows, delimiter=";")
    (HERE / "valid_bom_semicolon.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))


def cp1252() -> None:
    """A Windows-1252 file (curly quotes 0x93/0x94 prove it is not Latin-1) with accents."""
    header = [
        "Clave",
        "Nombre",
        "Categoría",
        "Latitud",
        "Longitud",
        "Localidad",
        "Dirección",
        "Proveedor",
        "Tecnología",
        "Notas",
    ]
    rows = [
        [
            "31DPR0999Q",
            "Escuela Primaria “Niños Héroes”",
            "escuela",
            "20.9674",
            "-89.6243",
            "Mérida",
            "Calle 60 Núm. 1",
            "Megacable",
            "fibra",
            "Equipo en la dirección",
        ],
        [
            "22SSA001234",
            "Clínica Ñuu Savi",
            "clínica",
            "20.5888",
            "-100.3899",
            "Santiago de Querétaro",
            "Andador Señor de la Peña",
            "Izzi",
            "cobre",
            "Pedir llave al señor García",
        ],
        [
            "MXC-GB-20-000099",
            "Agencia Municipal San Martín",
            "gobierno",
            "17.0606",
            "-96.7253",
            "Oaxaca de Juárez",
            "Domicilio conocido",
            "CFE TEIT",
            "radioenlace",
            "",
        ],
    ]
    (HERE / "valid_cp1252.csv").write_bytes(_csv_text(header, rows).encode("cp1252"))


def semicolon_utf8() -> None:
    """UTF-8 without BOM, semicolons and decimal commas in coordinates."""
    header = ["cct", "nombre", "tipo", "latitud", "longitud", "proveedor", "tecnologia"]
    rows = [
        [
            "09DES0002C",
            "Escuela Secundaria Técnica 2",
            "school",
            "19,4326",
            "-99,1332",
            "Izzi",
            "fiber",
        ],
        [
            "09SSA000555",
            "Hospital General Centro",
            "hospital",
            "19,4330",
            "-99,1400",
            "Telmex",
            "fibra optica",
        ],
    ]
    (HERE / "valid_semicolon_utf8.csv").write_text(
        _csv_text(header, rows, delimiter=";"), encoding="utf-8"
    )


def _row(key: str, lat: str, lon: str, **changes: str) -> list[str]:
    base = dict(zip(COLUMNS, VALID[0], strict=True))
    base.update(
        site_key=key,
        name=f"Sitio {key}",
        lat=lat,
        lon=lon,
        mgmt_ip="",
        snmp_community="",
        http_url="",
    )
    base.update(changes)
    return [base[c] for c in COLUMNS]


# line: (site_key, what is wrong); line 1 is the header.
INVALID_ROWS = [
    _row("VAL-001", "19.4326", "-99.1332"),  # 2 valid
    _row("VAL-002", "", ""),  # 3 missing coordinates
    _row("VAL-003", "diecinueve", "-99.1"),  # 4 non-numeric latitude
    _row("VAL-004", "-96.7253", "17.0606"),  # 5 swapped
    _row("VAL-005", "14.6349", "-90.5069"),  # 6 Guatemala City: outside Mexico
    _row("VAL-006", "18.0", "-105.0"),  # 7 Pacific, far from the coast
    _row("VAL-007", "16.809125", "-99.876522"),  # 8 ~500 m off Acapulco: snapped, warning
    _row("VAL-008", "19.4326", "-99.1332"),  # 9 duplicate key
    _row("VAL-008", "19.4330", "-99.1340"),  # 10 duplicate key
    _row("VAL-009", "19.4326", "-99.1332", category="cine"),  # 11 unknown category
    _row("VAL-010", "19.4326", "-99.1332", technology="palomas mensajeras"),  # 12 technology
    _row("VAL-011", "19.4326", "-99.1332", mgmt_ip="10.0.0.300"),  # 13 malformed IP
    _row("VAL-012", "19.4326", "-99.1332", bw_down_mbps="-5"),  # 14 negative bandwidth
    _row("VAL-013", "19.4326", "-99.1332", snmp_version="3", v3_user=""),  # 15 v3, no user
    _row("VAL-014", "19.4326", "99.1332"),  # 16 positive longitude
    _row("VAL-015", "17.0606", "-96.7253"),  # 17 valid
]


def invalid_rows() -> None:
    (HERE / "invalid_rows.csv").write_text(_csv_text(COLUMNS, INVALID_ROWS), encoding="utf-8")


def multiline() -> None:
    """A quoted line break in row 1 moves row 2 to line 4 of the file."""
    header = ["site_key", "name", "category", "lat", "lon", "access_notes"]
    rows = [
        ["ML-001", "Sitio uno", "school", "19.4326", "-99.1332", "Primera línea\nsegunda línea"],
        ["ML-002", "Sitio dos", "cine", "19.4326", "-99.1332", ""],
    ]
    (HERE / "multiline.csv").write_text(_csv_text(header, rows), encoding="utf-8")


def extra_fields() -> None:
    """Line 3 has an unquoted comma too many; lines 2 and 4 are fine."""
    text = (
        "site_key,name,category,lat,lon\n"
        "EF-001,Sitio uno,school,19.4326,-99.1332\n"
        "EF-002,Sitio dos, con coma,school,19.4326,-99.1332\n"
        "EF-003,Sitio tres,school,17.0606,-96.7253\n"
    )
    (HERE / "extra_fields.csv").write_text(text, encoding="utf-8")


def spatial() -> None:
    """The valid sites as GeoJSON, GeoPackage and Shapefile (geometry instead of lat/lon)."""
    frame = pd.DataFrame(VALID, columns=COLUMNS)
    geometry = shapely.points(frame["lon"].astype(float), frame["lat"].astype(float))
    attributes = frame.drop(columns=["lat", "lon"])
    for column in ("bw_down_mbps", "bw_up_mbps"):
        attributes[column] = attributes[column].astype(float)
    attributes["wan_if_index"] = pd.to_numeric(attributes["wan_if_index"]).astype("Int64")
    gdf = gpd.GeoDataFrame(attributes, geometry=geometry, crs="EPSG:4326")
    for name in ("sites.geojson", "sites.gpkg"):
        (HERE / name).unlink(missing_ok=True)
    gdf.to_file(HERE / "sites.geojson", driver="GeoJSON")
    gdf.to_file(HERE / "sites.gpkg", driver="GPKG", layer="sitios")
    shp = HERE / "shp"
    shp.mkdir(exist_ok=True)
    for old in shp.glob("sites.*"):
        old.unlink()
    # Shapefile column names are cut to 10 characters (contact_phone → contact_ph ...).
    gdf.to_file(shp / "sites.shp", driver="ESRI Shapefile", encoding="UTF-8")
    bad = gpd.GeoDataFrame(
        {
            "site_key": ["GEO-001", "GEO-002"],
            "name": ["Punto", "Polígono"],
            "category": ["school", "school"],
        },
        geometry=[
            shapely.Point(-99.1332, 19.4326),
            shapely.box(-99.14, 19.43, -99.13, 19.44),
        ],
        crs="EPSG:4326",
    )
    (HERE / "mixed_geometry.geojson").unlink(missing_ok=True)
    bad.to_file(HERE / "mixed_geometry.geojson", driver="GeoJSON")


if __name__ == "__main__":
    valid_utf8()
    bom_semicolon_spanish()
    cp1252()
    semicolon_utf8()
    invalid_rows()
    multiline()
    extra_fields()
    spatial()
    print("fixtures written to", HERE)
