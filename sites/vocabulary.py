"""The inventory's fixed vocabulary: allowed values, file columns and their Spanish aliases."""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

Category = Literal["school", "health", "public_space", "community", "government", "research"]
Technology = Literal["fiber", "microwave", "satellite", "dsl", "cellular", "other"]
Status = Literal["planned", "installed", "active", "suspended", "retired"]
SnmpVersion = Literal["2c", "3"]
AuthProto = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProto = Literal["DES", "AES", "AES192", "AES256"]

CATEGORIES: Final = ("school", "health", "public_space", "community", "government", "research")
TECHNOLOGIES: Final = ("fiber", "microwave", "satellite", "dsl", "cellular", "other")
STATUSES: Final = ("planned", "installed", "active", "suspended", "retired")
SNMP_VERSIONS: Final = ("2c", "3")
AUTH_PROTOCOLS: Final = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS: Final = ("DES", "AES", "AES192", "AES256")

# Inventory columns written to the ``sites`` table, in file order.
PUBLIC_COLUMNS: Final = (
    "site_key",
    "name",
    "category",
    "lat",
    "lon",
    "locality",
    "address",
    "provider",
    "technology",
    "bw_down_mbps",
    "bw_up_mbps",
    "status",
    "installed_on",
    "contact_name",
    "contact_phone",
    "access_notes",
    "mgmt_ip",
    "snmp_version",
    "snmp_port",
    "wan_if_index",
    "wan_if_name",
    "http_url",
)
# Probe credentials: accepted on import, stored in ``site_secrets``, never exported.
SECRET_COLUMNS: Final = (
    "snmp_community",
    "v3_user",
    "v3_auth_proto",
    "v3_auth_key",
    "v3_priv_proto",
    "v3_priv_key",
)
# Columns whose value the importer only compares with what PostGIS assigns (warnings).
HINT_COLUMNS: Final = ("mun_cvegeo_hint", "municipality_hint")
REQUIRED_COLUMNS: Final = ("site_key", "name", "category", "lat", "lon")
# Columns an export writes that an import derives itself, so they are ignored without a word.
DERIVED_COLUMNS: Final = (
    "id",
    "cve_ent",
    "state",
    "created_at",
    "updated_at",
    "distance_m",
    "snmp_credentials",
    "geometry",
)


def normalise(text: str) -> str:
    """Return ``text`` lower-cased, without accents, with runs of other characters as ``_``."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "_", plain).strip("_")


_HEADER_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "site_key": (
        "clave",
        "key",
        "cct",
        "clues",
        "clave_cct",
        "clave_clues",
        "clave_sitio",
        "clave_del_sitio",
        "id_sitio",
        "codigo",
        "code",
        "sitekey",
    ),
    "name": ("nombre", "nombre_sitio", "nombre_del_sitio", "site_name", "nombre_del_inmueble"),
    "category": ("categoria", "tipo", "tipo_sitio", "tipo_de_sitio", "type"),
    "lat": ("latitud", "latitude", "y"),
    "lon": ("longitud", "longitude", "lng", "long", "x"),
    "locality": ("localidad", "nom_loc", "nombre_localidad", "nombre_de_la_localidad"),
    "address": ("direccion", "domicilio"),
    "provider": ("proveedor", "isp", "operador", "carrier"),
    "technology": ("tecnologia", "tech", "tecnologia_de_acceso", "access_technology"),
    "bw_down_mbps": (
        "bw_down",
        "bw_down_mb",
        "bajada",
        "bajada_mbps",
        "ancho_de_banda",
        "ancho_de_banda_bajada",
        "ancho_de_banda_de_bajada",
        "velocidad_bajada",
        "velocidad_de_bajada",
        "download",
        "download_mbps",
    ),
    "bw_up_mbps": (
        "bw_up",
        "subida",
        "subida_mbps",
        "ancho_de_banda_subida",
        "ancho_de_banda_de_subida",
        "velocidad_subida",
        "velocidad_de_subida",
        "upload",
        "upload_mbps",
    ),
    "status": ("estatus", "estado_del_sitio", "estado_sitio", "situacion"),
    "installed_on": (
        "installed",
        "install_date",
        "fecha_instalacion",
        "fecha_de_instalacion",
    ),
    "contact_name": (
        "contact_na",
        "contacto",
        "nombre_contacto",
        "nombre_del_contacto",
        "responsable",
    ),
    "contact_phone": ("contact_ph", "telefono", "tel", "telefono_contacto", "phone"),
    "access_notes": (
        "access_not",
        "notas",
        "notas_acceso",
        "notas_de_acceso",
        "observaciones",
        "notes",
    ),
    "mgmt_ip": ("ip", "ip_gestion", "ip_de_gestion", "direccion_ip", "ip_address", "management_ip"),
    "snmp_version": ("snmp_versi", "version_snmp"),
    "snmp_port": ("puerto_snmp",),
    "wan_if_index": ("wan_if_ind", "ifindex", "if_index"),
    "wan_if_name": ("wan_if_nam", "ifname", "if_name", "interfaz_wan"),
    "http_url": ("url", "url_http", "url_sonda"),
    "snmp_community": ("snmp_commu", "community", "comunidad", "comunidad_snmp"),
    "v3_user": ("snmp_user", "usuario_snmp", "usuario_v3"),
    "v3_auth_proto": ("v3_auth_pr",),
    "v3_auth_key": ("v3_auth_ke",),
    "v3_priv_proto": ("v3_priv_pr",),
    "v3_priv_key": ("v3_priv_ke",),
    "mun_cvegeo_hint": ("mun_cvegeo", "cvegeo_mun", "cve_mun_geo", "mun_cvegeo_"),
    "municipality_hint": ("municipio", "municipality", "nom_mun", "municipali", "mun"),
}

HEADER_ALIASES: Final[dict[str, str]] = {
    alias: canonical
    for canonical, aliases in _HEADER_ALIASES.items()
    for alias in (canonical, *aliases)
}
_IGNORED_HEADERS: Final = frozenset(
    (*DERIVED_COLUMNS, "estado", "entidad", "nom_ent", "geom", "the_geom", "fid", "ogc_fid")
)


def canonical_header(header: str) -> str | None:
    """Return the canonical column a file header stands for, "" if ignored, None if unknown."""
    key = normalise(header)
    for candidate in (key, re.sub(r"_mbps$", "", key), re.sub(r"_mbps$", "", key) + "_mbps"):
        if candidate in HEADER_ALIASES:
            return HEADER_ALIASES[candidate]
    if key in _IGNORED_HEADERS:
        return ""
    return None


def _aliases(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {normalise(a): value for value, aliases in table.items() for a in (value, *aliases)}


CATEGORY_ALIASES: Final = _aliases(
    {
        "school": (
            "escuela",
            "escuelas",
            "educacion",
            "educativo",
            "escolar",
            "plantel",
            "preescolar",
            "primaria",
            "secundaria",
            "telesecundaria",
            "bachillerato",
            "jardin de ninos",
        ),
        "health": (
            "salud",
            "clinica",
            "hospital",
            "centro de salud",
            "unidad medica",
            "unidad de salud",
            "consultorio",
        ),
        "public_space": (
            "public space",
            "espacio publico",
            "espacios publicos",
            "plaza",
            "parque",
            "biblioteca",
        ),
        "community": (
            "comunidad",
            "comunitario",
            "centro comunitario",
            "area comunitaria",
            "community area",
        ),
        "government": (
            "gobierno",
            "gubernamental",
            "oficina de gobierno",
            "oficina gubernamental",
            "government office",
            "ayuntamiento",
            "presidencia municipal",
        ),
        "research": (
            "investigacion",
            "centro de investigacion",
            "research centre",
            "research center",
        ),
    }
)
TECHNOLOGY_ALIASES: Final = _aliases(
    {
        "fiber": ("fibre", "fibra", "fibra optica", "ftth", "fttx", "fttb"),
        "microwave": ("microondas", "radioenlace", "radio enlace", "enlace de microondas"),
        "satellite": ("satelite", "satelital", "vsat", "satellital"),
        "dsl": ("adsl", "vdsl", "xdsl", "cobre", "par de cobre"),
        "cellular": ("celular", "movil", "3g", "4g", "lte", "4g lte", "5g", "red compartida"),
        "other": ("otro", "otra", "otros"),
    }
)
STATUS_ALIASES: Final = _aliases(
    {
        "planned": ("planeado", "planificado", "programado", "por instalar", "plan"),
        "installed": ("instalado", "instalada"),
        "active": ("activo", "activa", "operando", "en operacion", "operativo", "operativa"),
        "suspended": ("suspendido", "suspendida"),
        "retired": ("retirado", "retirada", "baja", "dado de baja"),
    }
)
SNMP_VERSION_ALIASES: Final = _aliases(
    {"2c": ("v2c", "snmpv2c", "2", "v2", "snmpv2", "2.0"), "3": ("v3", "snmpv3", "3.0")}
)
AUTH_PROTOCOL_ALIASES: Final = _aliases(
    {
        "MD5": ("hmac md5", "usmhmacmd5authprotocol"),
        "SHA": ("sha1", "sha 1", "hmac sha", "usmhmacshaauthprotocol"),
        "SHA224": ("sha 224",),
        "SHA256": ("sha 256",),
        "SHA384": ("sha 384",),
        "SHA512": ("sha 512",),
    }
)
PRIV_PROTOCOL_ALIASES: Final = _aliases(
    {
        "DES": ("cbc des", "usmdesprivprotocol"),
        "AES": ("aes128", "aes 128", "cfb aes", "usmaescfb128protocol"),
        "AES192": ("aes 192",),
        "AES256": ("aes 256",),
    }
)

VALUE_ALIASES: Final[dict[str, dict[str, str]]] = {
    "category": CATEGORY_ALIASES,
    "technology": TECHNOLOGY_ALIASES,
    "status": STATUS_ALIASES,
    "snmp_version": SNMP_VERSION_ALIASES,
    "v3_auth_proto": AUTH_PROTOCOL_ALIASES,
    "v3_priv_proto": PRIV_PROTOCOL_ALIASES,
}
ALLOWED_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "category": CATEGORIES,
    "technology": TECHNOLOGIES,
    "status": STATUSES,
    "snmp_version": SNMP_VERSIONS,
    "v3_auth_proto": AUTH_PROTOCOLS,
    "v3_priv_proto": PRIV_PROTOCOLS,
}


def canonical_value(column: str, value: str) -> str | None:
    """Return the allowed value ``value`` stands for in ``column`` (Spanish too), else None."""
    return VALUE_ALIASES[column].get(normalise(value))
