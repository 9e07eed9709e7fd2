"""A realistic national inventory placed on INEGI's real localities, reproducible from a seed.

Everything is drawn from one seeded numpy Generator in a fixed order and written with fixed
formatting, so the same (count, seed, lab) gives a byte-identical file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import shapely

from core.errors import DataFileError, InvalidInput
from core.progress import NullProgress, Progress
from core.settings import LabPorts
from probes.model import LAB_COMMUNITY, LAB_FIRST_ADDRESS
from sites.vocabulary import CATEGORIES, PUBLIC_COLUMNS, SECRET_COLUMNS, TECHNOLOGIES

# The programme's real mix at 101,322 sites, in CATEGORIES order.
PROGRAMME_MIX: Final = (68_806, 9_935, 9_757, 6_033, 6_690, 101)
PROGRAMME_TOTAL: Final = sum(PROGRAMME_MIX)
MAX_COUNT: Final = 200_000
GENERATED_COLUMNS: Final = (*PUBLIC_COLUMNS, *SECRET_COLUMNS)

# Municipalities in the lower tail of population of which a share get no site at all.
GAP_POPULATION_QUANTILE: Final = 0.4
GAP_SHARE_OF_MUNICIPALITIES: Final = 0.06
CITY_POPULATION: Final = 15_000
LAB_HTTPS_SHARE: Final = 0.02
WAN_BY_NAME_SHARE: Final = 0.05

# CURP/CLUES two-letter state codes and the area code of each state capital, by CVE_ENT.
STATE_CODES: Final = (
    "AS",
    "BC",
    "BS",
    "CC",
    "CL",
    "CM",
    "CS",
    "CH",
    "DF",
    "DG",
    "GT",
    "GR",
    "HG",
    "JC",
    "MC",
    "MN",
    "MS",
    "NT",
    "NL",
    "OC",
    "PL",
    "QT",
    "QR",
    "SP",
    "SL",
    "SR",
    "TC",
    "TS",
    "TL",
    "VZ",
    "YN",
    "ZS",
)
STATE_LADAS: Final = (
    "449",
    "686",
    "612",
    "981",
    "844",
    "312",
    "961",
    "614",
    "55",
    "618",
    "473",
    "747",
    "771",
    "33",
    "722",
    "443",
    "777",
    "311",
    "81",
    "951",
    "222",
    "442",
    "983",
    "444",
    "667",
    "662",
    "993",
    "834",
    "246",
    "228",
    "999",
    "492",
)

HEROES: Final = (
    "Benito Juárez",
    "Miguel Hidalgo y Costilla",
    "José María Morelos y Pavón",
    "Emiliano Zapata",
    "Lázaro Cárdenas del Río",
    "Josefa Ortiz de Domínguez",
    "Niños Héroes",
    "Sor Juana Inés de la Cruz",
    "Vicente Guerrero",
    "Ignacio Zaragoza",
    "Francisco I. Madero",
    "Cuauhtémoc",
    "Guadalupe Victoria",
    "Leona Vicario",
    "Revolución Mexicana",
    "Justo Sierra",
    "Gabriela Mistral",
    "Netzahualcóyotl",
    "Amado Nervo",
    "Venustiano Carranza",
    "Ignacio Allende",
    "Francisco Villa",
    "Aquiles Serdán",
    "Rafael Ramírez",
    "José Vasconcelos",
    "Independencia",
    "Héroes de la Patria",
    "Nicolás Bravo",
    "Ricardo Flores Magón",
    "Adolfo López Mateos",
    "Manuel Ávila Camacho",
    "Carmen Serdán",
    "Ramón López Velarde",
    "Jaime Torres Bodet",
    "Octavio Paz",
    "Moisés Sáenz",
    "Cristóbal Colón",
    "20 de Noviembre",
    "5 de Mayo",
    "18 de Marzo",
)
# (CCT type code, name prefix, share in urban localities, share in rural localities)
SCHOOL_TYPES: Final = (
    ("JN", "Jardín de Niños", 0.27, 0.30),
    ("PR", "Escuela Primaria", 0.40, 0.45),
    ("ES", "Escuela Secundaria General", 0.15, 0.03),
    ("TV", "Telesecundaria", 0.05, 0.18),
    ("ST", "Escuela Secundaria Técnica", 0.08, 0.02),
    ("BH", "Bachillerato General", 0.05, 0.02),
)
# (institution code of the CLUES, share)
HEALTH_INSTITUTIONS: Final = (("SSA", 0.55), ("IMB", 0.20), ("IMS", 0.15), ("IST", 0.10))
OTHER_KEY_CODES: Final = {
    "public_space": "EP",
    "community": "CC",
    "government": "GB",
    "research": "CI",
}
OTHER_NAMES: Final = {
    "public_space": (
        "Plaza Principal de {}",
        "Biblioteca Pública {}",
        "Parque Municipal {}",
        "Jardín Central de {}",
        "Unidad Deportiva {}",
        "Kiosco Digital {}",
    ),
    "community": (
        "Centro Comunitario {}",
        "Casa de la Cultura {}",
        "Centro de Desarrollo Comunitario {}",
        "Salón Ejidal {}",
        "Centro Comunitario de Aprendizaje {}",
    ),
    "government": (
        "Presidencia Municipal de {}",
        "Agencia Municipal {}",
        "Oficina del Registro Civil {}",
        "Delegación Municipal {}",
        "Comisaría Ejidal {}",
        "Oficina de Gobierno del Estado en {}",
    ),
    "research": (
        "Centro de Investigación en Ciencias Agrícolas {}",
        "Centro de Investigación en Salud Pública {}",
        "Centro de Investigación Oceanográfica {}",
        "Centro de Investigación en Matemáticas {}",
        "Centro de Investigación en Energía {}",
        "Instituto de Ecología, Unidad {}",
        "Centro de Investigación en Alimentación y Desarrollo {}",
    ),
}
STREETS: Final = (
    "Av. Juárez",
    "Calle Hidalgo",
    "Calle Morelos",
    "Av. Reforma",
    "Calle 5 de Mayo",
    "Calle Independencia",
    "Av. Revolución",
    "Calle Zaragoza",
    "Calle Allende",
    "Calle Guerrero",
    "Av. Insurgentes",
    "Calle Aldama",
    "Calle Madero",
    "Calle Constitución",
    "Av. Universidad",
    "Calle Niños Héroes",
)
FIRST_NAMES: Final = (
    "María",
    "José",
    "Juan",
    "Guadalupe",
    "Francisco",
    "Rosa",
    "Antonio",
    "Ana",
    "Jesús",
    "Verónica",
    "Miguel",
    "Leticia",
    "Alejandro",
    "Patricia",
    "Luis",
    "Elena",
    "Carlos",
    "Martha",
    "Pedro",
    "Adriana",
    "Jorge",
    "Gabriela",
    "Ricardo",
    "Sofía",
)
SURNAMES: Final = (
    "Hernández",
    "García",
    "Martínez",
    "López",
    "González",
    "Pérez",
    "Rodríguez",
    "Sánchez",
    "Ramírez",
    "Cruz",
    "Flores",
    "Gómez",
    "Morales",
    "Vázquez",
    "Reyes",
    "Jiménez",
    "Torres",
    "Díaz",
    "Gutiérrez",
    "Ruiz",
    "Mendoza",
    "Aguilar",
    "Ortiz",
    "Castillo",
)
ACCESS_NOTES: Final = (
    ("", 0.45),
    ("Solicitar llave con la dirección; horario de 8:00 a 14:00.", 0.12),
    ("Equipo en la dirección, rack de pared junto a la ventana.", 0.10),
    ("Antena en azotea; llevar escalera de 6 m.", 0.08),
    ("Camino de terracería los últimos 5 km; en temporada de lluvias entrar en 4x4.", 0.07),
    ("Avisar a la autoridad local antes de la visita.", 0.06),
    ("Perro en el patio; llamar al contacto al llegar.", 0.04),
    ("Sin señal celular en el sitio; acordar la visita con anticipación.", 0.05),
    ("Acceso solo en fines de semana.", 0.03),
)
# Providers per access technology, with shares (a realistic Mexican mix).
PROVIDERS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "fiber": (
        ("Telmex", 0.40),
        ("Megacable", 0.13),
        ("Totalplay", 0.15),
        ("Izzi", 0.12),
        ("CFE TEIT", 0.12),
        ("Axtel", 0.08),
    ),
    "microwave": (
        ("CFE TEIT", 0.35),
        ("Axtel", 0.20),
        ("Telmex", 0.20),
        ("Bestel", 0.15),
        ("Transtelco", 0.10),
    ),
    "satellite": (
        ("Hughes", 0.30),
        ("Telecomm", 0.25),
        ("Viasat", 0.20),
        ("Starlink", 0.15),
        ("Eutelsat", 0.10),
    ),
    "dsl": (("Telmex", 0.90), ("Maxcom", 0.10)),
    "cellular": (("Altán Redes", 0.45), ("Telcel", 0.35), ("AT&T México", 0.20)),
    "other": (("CFE TEIT", 0.50), ("Telmex", 0.50)),
}
# Contracted download options (Mbps) with shares, and upload as a share of download.
BANDWIDTH: Final[dict[str, tuple[tuple[int, ...], tuple[float, ...], float]]] = {
    "fiber": ((50, 100, 200, 500), (0.30, 0.40, 0.20, 0.10), 0.5),
    "microwave": ((20, 30, 50, 100), (0.25, 0.35, 0.30, 0.10), 1.0),
    "satellite": ((5, 10, 20, 30), (0.20, 0.40, 0.30, 0.10), 0.2),
    "dsl": ((10, 20, 30), (0.40, 0.40, 0.20), 0.1),
    "cellular": ((10, 20, 30, 50), (0.30, 0.35, 0.25, 0.10), 0.5),
    "other": ((10, 20), (0.60, 0.40), 0.5),
}
# Technology shares (TECHNOLOGIES order) per place class: urban, rural near a city, rural
# 15-40 km from one, remote rural; research centres are on fibre or microwave.
TECH_BY_PLACE: Final = np.array(
    [
        [0.55, 0.10, 0.03, 0.15, 0.15, 0.02],
        [0.15, 0.25, 0.13, 0.15, 0.30, 0.02],
        [0.02, 0.25, 0.45, 0.03, 0.25, 0.00],
        [0.00, 0.05, 0.85, 0.00, 0.10, 0.00],
        [0.90, 0.10, 0.00, 0.00, 0.00, 0.00],
    ]
)
STATUS_SHARES: Final = (
    ("active", 0.90),
    ("installed", 0.04),
    ("suspended", 0.025),
    ("planned", 0.025),
    ("retired", 0.01),
)
WAN_NAMES: Final = ("wan0", "GigabitEthernet0/1", "ether1", "GigabitEthernet0/0/0", "wan")
# Locality sampling: weight = population ** alpha (lower alpha spreads sites to small places).
CATEGORY_ALPHA: Final = {
    "school": 0.55,
    "health": 0.6,
    "public_space": 0.8,
    "community": 0.5,
    "government": 0.7,
    "research": 1.0,
}
RESEARCH_MIN_POPULATION: Final = 50_000
INSTALL_FIRST: Final = date(2019, 1, 1)
INSTALL_LAST: Final = date(2025, 12, 31)


@dataclass(frozen=True)
class Places:
    """Localities a site may be placed in, with what placement needs to know about them."""

    frame: pd.DataFrame  # cvegeo, cve_ent, mun, name, urban, pop, lon, lat, city_km
    polygons: npt.NDArray[np.object_]  # municipality polygon of each locality (prepared)


def category_counts(count: int) -> dict[str, int]:
    """Split ``count`` sites by the programme's category mix (largest remainder, exact total)."""
    if count < 0:
        raise InvalidInput(f"count must be zero or more; got {count}.")
    shares = np.array(PROGRAMME_MIX, dtype=float) * count / PROGRAMME_TOTAL
    base = np.floor(shares).astype(int)
    remainder = count - int(base.sum())
    order = np.argsort(-(shares - base), kind="stable")
    base[order[:remainder]] += 1
    return dict(zip(CATEGORIES, (int(v) for v in base), strict=True))


def load_places(inegi_dir: Path) -> Places:
    """Read the INEGI localities and municipalities that sites may be placed on.

    Localities without coordinates or population, and those whose point falls outside their
    own municipality's (simplified) boundary, are left out so every generated point imports.
    """
    loc_path = inegi_dir / "localidades.csv"
    mun_path = inegi_dir / "municipios.gpkg"
    for path in (loc_path, mun_path):
        if not path.is_file():
            raise DataFileError(
                f"{path} is missing; the generator places sites on INEGI's localities. "
                "Copy data/inegi/ from a clean clone or set CONECTADO_DATA_DIR."
            )
    raw = pd.read_csv(
        loc_path,
        dtype=str,
        keep_default_na=False,
        usecols=["CVEGEO", "CVE_ENT", "NOMGEO", "AMBITO", "LAT", "LON", "POB2020"],
    )
    lat = pd.to_numeric(raw["LAT"], errors="coerce")
    lon = pd.to_numeric(raw["LON"], errors="coerce")
    pop = pd.to_numeric(raw["POB2020"], errors="coerce")
    ok = lat.notna() & lon.notna() & pop.notna() & (pop > 0)
    frame = pd.DataFrame(
        {
            "cvegeo": raw["CVEGEO"][ok].to_numpy(),
            "cve_ent": raw["CVE_ENT"][ok].to_numpy(),
            "mun": raw["CVEGEO"][ok].str[:5].to_numpy(),
            "name": raw["NOMGEO"][ok].to_numpy(),
            "urban": (raw["AMBITO"][ok] == "URBANO").to_numpy(),
            "pop": pop[ok].astype("int64").to_numpy(),
            "lon": lon[ok].to_numpy(),
            "lat": lat[ok].to_numpy(),
        }
    )
    mun = pyogrio.read_dataframe(mun_path, layer="municipios", columns=["CVEGEO"])
    by_mun = pd.Series(mun.geometry.values, index=mun["CVEGEO"].to_numpy())
    shapely.prepare(by_mun.to_numpy())
    polygons = by_mun.reindex(frame["mun"]).to_numpy()
    known = pd.notna(polygons)
    inside = np.zeros(len(frame), dtype=bool)
    inside[known] = shapely.contains_xy(
        polygons[known], frame["lon"].to_numpy()[known], frame["lat"].to_numpy()[known]
    )
    frame = frame[inside].sort_values("cvegeo", kind="stable").reset_index(drop=True)
    polygons = by_mun.reindex(frame["mun"]).to_numpy()
    frame["city_km"] = _km_to_nearest_city(frame)
    return Places(frame=frame, polygons=polygons)


def _planar_km(
    lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
) -> npt.NDArray[np.object_]:
    # Good enough for "how far is the nearest city" at Mexico's latitudes (a few % error).
    points: npt.NDArray[np.object_] = np.asarray(
        shapely.points(lon * 111.32 * np.cos(np.radians(23.0)), lat * 110.57), dtype=object
    )
    return points


def _km_to_nearest_city(frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    points = _planar_km(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    cities = points[frame["pop"].to_numpy() >= CITY_POPULATION]
    tree = shapely.STRtree(cities)
    (src, _), dist = tree.query_nearest(points, return_distance=True, all_matches=False)
    out = np.full(len(frame), np.inf)
    out[src] = dist
    return out


def _choice(
    rng: np.random.Generator, options: tuple[tuple[str, float], ...], size: int
) -> npt.NDArray[np.str_]:
    values = np.array([o for o, _ in options])
    weights = np.array([w for _, w in options], dtype=float)
    return values[rng.choice(len(values), size=size, p=weights / weights.sum())]


def _random_strings(rng: np.random.Generator, size: int, length: int) -> npt.NDArray[np.str_]:
    alphabet = np.frombuffer(b"abcdefghijkmnopqrstuvwxyz23456789", dtype=np.uint8)
    codes = alphabet[rng.integers(0, len(alphabet), size=(size, length))]
    return np.ascontiguousarray(codes).view(f"S{length}").ravel().astype(str)


def _digits(values: npt.NDArray[np.int64], width: int) -> pd.Series:
    return pd.Series(values).astype(str).str.zfill(width)


def _check_letters(prefixes: pd.Series) -> pd.Series:
    # A deterministic check letter (weighted sum of the key's characters), like SEP's.
    codes = np.frombuffer("".join(prefixes).encode("ascii"), dtype=np.uint8)
    width = len(prefixes.iloc[0]) if len(prefixes) else 0
    matrix = codes.reshape(len(prefixes), width).astype(np.int64)
    total = (matrix * np.arange(1, width + 1)).sum(axis=1)
    return pd.Series(np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))[total % 24])


def _unique_numbers(
    rng: np.random.Generator, groups: pd.Series, space: int, what: str
) -> npt.NDArray[np.int64]:
    """Distinct random numbers below ``space`` within each group (stable, seeded)."""
    out = np.zeros(len(groups), dtype=np.int64)
    codes, uniques = pd.factorize(groups, sort=True)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=len(uniques))
    start = 0
    for group, size in enumerate(sizes):
        if size > space:
            raise InvalidInput(
                f"Too many {what} in group {uniques[group]} ({size} > {space}) to give each a "
                f"unique key; generate at most {MAX_COUNT:,} sites."
            )
        picked = np.sort(rng.choice(space, size=size, replace=False))
        out[order[start : start + size]] = picked
        start += size
    return out


def _school_keys(
    rng: np.random.Generator,
    ent: pd.Series,
    urban: npt.NDArray[np.bool_],
    small: npt.NDArray[np.bool_],
) -> tuple[pd.Series, pd.Series]:
    n = len(ent)
    shares_u = np.array([t[2] for t in SCHOOL_TYPES])
    shares_r = np.array([t[3] for t in SCHOOL_TYPES])
    u = rng.random(n)
    cum = np.where(urban[:, None], np.cumsum(shares_u), np.cumsum(shares_r))
    kind = np.minimum((u[:, None] > cum).sum(axis=1), len(SCHOOL_TYPES) - 1)
    type_code = np.array([t[0] for t in SCHOOL_TYPES])[kind]
    prefix = np.array([t[1] for t in SCHOOL_TYPES])[kind]
    conafe = small & np.isin(type_code, ("JN", "PR")) & (rng.random(n) < 0.25)
    control = np.where(conafe, "K", np.where(rng.random(n) < 0.65, "D", "E"))
    head = ent.to_numpy() + control + type_code
    number = _unique_numbers(rng, pd.Series(head), 10_000, "schools")
    body = pd.Series(head) + _digits(number, 4)
    keys = body + _check_letters(body)
    hero = np.array(HEROES)[rng.integers(0, len(HEROES), n)]
    names = pd.Series(prefix) + " " + pd.Series(hero)
    return keys, names


def _health_keys(
    rng: np.random.Generator,
    ent: pd.Series,
    urban: npt.NDArray[np.bool_],
    pop: npt.NDArray[np.int64],
    locality: pd.Series,
) -> tuple[pd.Series, pd.Series]:
    n = len(ent)
    inst = _choice(rng, HEALTH_INSTITUTIONS, n)
    state = np.array(STATE_CODES)[ent.astype(int).to_numpy() - 1]
    head = pd.Series(state) + pd.Series(inst)
    number = _unique_numbers(rng, head, 100_000, "health units")
    keys = head + _digits(number, 6)
    umf = pd.Series(rng.integers(1, 90, n)).astype(str)
    ssa = np.where(
        urban & (pop >= 100_000) & (rng.random(n) < 0.3),
        "Hospital General ",
        np.where(urban, "Centro de Salud ", "Centro de Salud Rural "),
    )
    names = pd.Series(
        np.select(
            [inst == "IMS", inst == "IST", inst == "IMB"],
            [
                "Unidad de Medicina Familiar No. " + umf + " ",
                "Clínica de Medicina Familiar ISSSTE ",
                np.where(urban, "Hospital Rural IMSS-Bienestar ", "Unidad Médica Rural "),
            ],
            default=ssa,
        )
    )
    names = names.where(inst == "IMS", names + locality.to_numpy())
    names = names.where(inst != "IMS", names.str.rstrip())
    return keys, names


def _other_keys(
    rng: np.random.Generator, category: str, ent: pd.Series, locality: pd.Series
) -> tuple[pd.Series, pd.Series]:
    n = len(ent)
    head = "MXC-" + OTHER_KEY_CODES[category] + "-" + ent
    number = _unique_numbers(rng, head, 1_000_000, f"{category} sites")
    keys = head.reset_index(drop=True) + "-" + _digits(number, 6)
    templates = np.array(OTHER_NAMES[category])[rng.integers(0, len(OTHER_NAMES[category]), n)]
    names = pd.Series(
        [t.format(loc) for t, loc in zip(templates, locality.to_numpy(), strict=True)]
    )
    return keys, names


def _exclude_gaps(rng: np.random.Generator, places: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Mark localities of a few small municipalities that get no site (the real gaps)."""
    pop_by_mun = places.groupby("mun", sort=True)["pop"].sum()
    small = pop_by_mun[pop_by_mun <= pop_by_mun.quantile(GAP_POPULATION_QUANTILE)].index
    size = min(len(small), round(GAP_SHARE_OF_MUNICIPALITIES * len(pop_by_mun)))
    left_out = rng.choice(np.asarray(small), size=size, replace=False)
    return np.asarray(places["mun"].isin(left_out).to_numpy(), dtype=bool)


def _jitter(
    rng: np.random.Generator, places: Places, idx: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Points a little away from each locality's reference point, inside its municipality."""
    frame = places.frame
    lon0 = frame["lon"].to_numpy()[idx]
    lat0 = frame["lat"].to_numpy()[idx]
    pop = frame["pop"].to_numpy()[idx].astype(float)
    urban = frame["urban"].to_numpy()[idx]
    radius_m = np.where(
        urban, np.minimum(200 + 15 * np.sqrt(pop), 6000), np.minimum(100 + 8 * np.sqrt(pop), 1500)
    )
    lon = lon0.copy()
    lat = lat0.copy()
    pending = np.ones(len(idx), dtype=bool)
    polygons = places.polygons[idx]
    for attempt in range(4):
        n = int(pending.sum())
        if n == 0:
            break
        angle = rng.random(n) * 2 * np.pi
        dist = np.sqrt(rng.random(n)) * radius_m[pending] / (2**attempt)
        cand_lat = lat0[pending] + dist * np.sin(angle) / 110_570
        cand_lon = lon0[pending] + dist * np.cos(angle) / (
            111_320 * np.cos(np.radians(lat0[pending]))
        )
        cand_lon = np.round(cand_lon, 6)
        cand_lat = np.round(cand_lat, 6)
        ok = shapely.contains_xy(polygons[pending], cand_lon, cand_lat)
        where = np.flatnonzero(pending)[ok]
        lon[where] = cand_lon[ok]
        lat[where] = cand_lat[ok]
        pending[where] = False
    # The few still pending keep their locality's point, which lies inside (load_places).
    return np.round(lon, 6), np.round(lat, 6)


def _lab_addresses(count: int) -> npt.NDArray[np.str_]:
    first = int(ipaddress.IPv4Address(LAB_FIRST_ADDRESS))
    base, host = divmod(first, 256)
    seq = base * 254 + (host - 1) + np.arange(count, dtype=np.int64)
    blocks, hosts = np.divmod(seq, 254)
    values = blocks * 256 + hosts + 1
    if count and values[-1] >= int(ipaddress.IPv4Address("128.0.0.0")):
        raise InvalidInput(
            f"{count:,} lab addresses do not fit in 127.0.0.0/8 after {LAB_FIRST_ADDRESS}."
        )
    return _dotted(values)


def _dotted(values: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    octets = [(values >> shift) & 255 for shift in (24, 16, 8, 0)]
    parts = [pd.Series(o).astype(str) for o in octets]
    dotted: npt.NDArray[np.str_] = (
        parts[0] + "." + parts[1] + "." + parts[2] + "." + parts[3]
    ).to_numpy(dtype=str)
    return dotted


def _private_addresses(ent: pd.Series) -> npt.NDArray[np.str_]:
    """Unique 10.<state>.x.y management addresses, numbered within each state."""
    state = ent.astype(int).to_numpy()
    seq = pd.Series(state).groupby(state).cumcount().to_numpy()
    blocks, hosts = np.divmod(seq, 254)
    values = (10 << 24) + (state.astype(np.int64) << 16) + (blocks << 8) + hosts + 1
    return _dotted(values)


def generate_sites(
    inegi_dir: Path,
    *,
    count: int = PROGRAMME_TOTAL,
    seed: int = 42,
    lab: bool = False,
    lab_ports: LabPorts | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Return ``count`` sites as an import-ready frame (GENERATED_COLUMNS, secrets included).

    Sites are placed on real localities weighted by population (leaving some small
    municipalities without any site), with plausible keys, names, providers and bandwidth;
    satellite is the usual technology of remote rural places. With ``lab`` every site gets a
    unique 127.x.y.z management address, the lab's community and ``lab_ports`` (the
    default lab ports when None).
    """
    if not 0 <= count <= MAX_COUNT:
        raise InvalidInput(f"count must be between 0 and {MAX_COUNT:,}; got {count:,}.")
    progress = progress or NullProgress()
    task = progress.task("Reading INEGI localities", total=1)
    places = load_places(inegi_dir)
    task.finish()
    task = progress.task("Placing sites", total=count)
    rng = np.random.default_rng(seed)
    frame = places.frame
    excluded = _exclude_gaps(rng, frame)
    pop = frame["pop"].to_numpy().astype(float)
    parts: list[pd.DataFrame] = []
    for category, n in category_counts(count).items():
        weight = np.where(excluded, 0.0, pop ** CATEGORY_ALPHA[category])
        if category == "community":
            weight = weight * np.where(frame["urban"].to_numpy(), 1.0, 1.5)
        if category == "research":
            weight = np.where(pop >= RESEARCH_MIN_POPULATION, weight, 0.0)
        idx = np.sort(rng.choice(len(frame), size=n, p=weight / weight.sum()))
        parts.append(_category_part(rng, places, category, idx))
        task.advance(n)
    task.finish()
    sites = pd.concat(parts, ignore_index=True) if parts else _empty()
    sites = sites.sort_values("site_key", kind="stable").reset_index(drop=True)
    _add_connection(rng, sites, lab=lab, ports=lab_ports or LabPorts())
    return sites[list(GENERATED_COLUMNS)]


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object) for c in (*GENERATED_COLUMNS, "cve_ent", "place", "urban")}
    )


def _category_part(
    rng: np.random.Generator, places: Places, category: str, idx: npt.NDArray[np.int64]
) -> pd.DataFrame:
    loc = places.frame.iloc[idx].reset_index(drop=True)
    ent = loc["cve_ent"]
    urban = loc["urban"].to_numpy()
    pop = loc["pop"].to_numpy()
    locality = loc["name"]
    if category == "school":
        keys, names = _school_keys(rng, ent, urban, pop < 500)
    elif category == "health":
        keys, names = _health_keys(rng, ent, urban, pop, locality)
    else:
        keys, names = _other_keys(rng, category, ent, locality)
    lon, lat = _jitter(rng, places, idx)
    city_km = loc["city_km"].to_numpy()
    place = np.select(
        [np.full(len(loc), category == "research"), urban, city_km < 15, city_km < 40],
        [4, 0, 1, 2],
        default=3,
    )
    return pd.DataFrame(
        {
            "site_key": keys.to_numpy(),
            "name": names.to_numpy(),
            "category": category,
            "lat": lat,
            "lon": lon,
            "locality": locality.to_numpy(),
            "cve_ent": ent.to_numpy(),
            "urban": urban,
            "small": pop < 2_500,
            "place": place,
        }
    )


def _add_connection(
    rng: np.random.Generator, sites: pd.DataFrame, *, lab: bool, ports: LabPorts
) -> None:
    """Fill technology, provider, bandwidth, status, contacts and probe settings in place."""
    n = len(sites)
    place = sites["place"].to_numpy().astype(int)
    cum = np.cumsum(TECH_BY_PLACE, axis=1)[place]
    tech_idx = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(TECHNOLOGIES) - 1)
    tech = np.array(TECHNOLOGIES)[tech_idx]
    provider = np.empty(n, dtype=object)
    down = np.zeros(n, dtype=np.int64)
    up = np.zeros(n, dtype=np.int64)
    for name in TECHNOLOGIES:
        mask = tech == name
        k = int(mask.sum())
        provider[mask] = _choice(rng, PROVIDERS[name], k)
        options, shares, up_share = BANDWIDTH[name]
        d = np.array(options)[rng.choice(len(options), size=k, p=np.array(shares))]
        down[mask] = d
        up[mask] = np.maximum(1, np.round(d * up_share)).astype(np.int64)
    research = sites["category"].to_numpy() == "research"
    down = np.where(research & (tech == "fiber"), 1000, down)
    up = np.where(research & (tech == "fiber"), 1000, up)
    sites["technology"] = tech
    sites["provider"] = provider
    sites["bw_down_mbps"] = down
    sites["bw_up_mbps"] = up

    status = _choice(rng, STATUS_SHARES, n)
    span = (INSTALL_LAST - INSTALL_FIRST).days
    days = rng.integers(0, span + 1, n)
    installed = pd.Series(
        pd.to_datetime(INSTALL_FIRST) + pd.to_timedelta(days, unit="D")
    ).dt.strftime("%Y-%m-%d")
    sites["status"] = status
    sites["installed_on"] = installed.where(status != "planned", "").to_numpy()

    first = np.array(FIRST_NAMES)[rng.integers(0, len(FIRST_NAMES), n)]
    last1 = np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)]
    last2 = np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)]
    sites["contact_name"] = (pd.Series(first) + " " + last1 + " " + last2).to_numpy()
    ent_idx = sites["cve_ent"].astype(int).to_numpy() - 1
    lada = np.array(STATE_LADAS)[ent_idx]
    local_digits = 10 - np.char.str_len(lada)
    number = rng.integers(0, 10**8, n) % (10 ** local_digits.astype(np.int64))
    digits = pd.Series(number).astype(str).str.zfill(8)
    digits = pd.Series([d[-k:] for d, k in zip(digits, local_digits, strict=True)])
    sites["contact_phone"] = (
        pd.Series(lada) + " " + digits.str[:-4] + " " + digits.str[-4:]
    ).to_numpy()
    sites["access_notes"] = _choice(rng, ACCESS_NOTES, n)

    street = np.array(STREETS)[rng.integers(0, len(STREETS), n)]
    house = pd.Series(rng.integers(1, 2000, n)).astype(str)
    address = pd.Series(street) + " " + house + ", " + sites["locality"]
    rural_small = sites["small"].to_numpy() & ~sites["urban"].to_numpy()
    sites["address"] = address.where(
        ~rural_small, "Domicilio conocido, " + sites["locality"]
    ).to_numpy()

    by_name = rng.random(n) < WAN_BY_NAME_SHARE
    if_index = pd.Series(
        np.array([1, 2, 3, 4, 5, 8])[rng.choice(6, size=n, p=[0.5, 0.25, 0.1, 0.08, 0.05, 0.02])]
    ).astype("Int64")
    sites["wan_if_index"] = if_index.where(~by_name, pd.NA)
    sites["wan_if_name"] = np.where(
        by_name, np.array(WAN_NAMES)[rng.integers(0, len(WAN_NAMES), n)], ""
    )
    https = rng.random(n) < LAB_HTTPS_SHARE
    if lab:
        ip = _lab_addresses(n)
        sites["mgmt_ip"] = ip
        sites["snmp_version"] = "2c"
        sites["snmp_port"] = ports.snmp
        sites["snmp_community"] = LAB_COMMUNITY
        for column in ("v3_user", "v3_auth_proto", "v3_auth_key", "v3_priv_proto", "v3_priv_key"):
            sites[column] = ""
        sites["http_url"] = np.where(
            https,
            "https://" + pd.Series(ip) + f":{ports.https}/",
            "http://" + pd.Series(ip) + f":{ports.http}/",
        )
        return
    ip = _private_addresses(sites["cve_ent"])
    v3 = rng.random(n) < 0.15
    community = "mxc-" + pd.Series(_random_strings(rng, n, 12))
    auth_key = pd.Series(_random_strings(rng, n, 16))
    priv_key = pd.Series(_random_strings(rng, n, 16))
    sites["mgmt_ip"] = ip
    sites["snmp_version"] = np.where(v3, "3", "2c")
    sites["snmp_port"] = 161
    sites["snmp_community"] = community.where(~v3, "").to_numpy()
    sites["v3_user"] = np.where(v3, "mxc-monitor", "")
    sites["v3_auth_proto"] = np.where(v3, "SHA256", "")
    sites["v3_auth_key"] = auth_key.where(v3, "").to_numpy()
    sites["v3_priv_proto"] = np.where(v3, "AES", "")
    sites["v3_priv_key"] = priv_key.where(v3, "").to_numpy()
    sites["http_url"] = np.where(
        https, "https://" + pd.Series(ip) + "/", "http://" + pd.Series(ip) + "/"
    )


def write_sites_csv(sites: pd.DataFrame, path: Path) -> None:
    """Write a generated inventory as UTF-8 CSV (6-decimal coordinates, ``\\n`` line ends)."""
    try:
        sites.to_csv(path, index=False, lineterminator="\n", float_format="%.6f", encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"Cannot write {path}: {exc.strerror}.") from exc
