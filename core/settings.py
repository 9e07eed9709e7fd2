"""The one settings object of Conectado, read from ``CONECTADO_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The lab's agents listen on these unless told otherwise; a `--lab` inventory names them.
LAB_SNMP_PORT = 16161
LAB_HTTP_PORT = 18080
LAB_HTTPS_PORT = 18443


class LabPorts(NamedTuple):
    """The ports of the lab's SNMP (udp), HTTP and HTTPS (tcp) agents."""

    snmp: int = LAB_SNMP_PORT
    http: int = LAB_HTTP_PORT
    https: int = LAB_HTTPS_PORT


class Settings(BaseSettings):
    """Every tunable of the platform; built once at start-up and passed down.

    Paths that are relative are taken from ``home`` (the project folder by default).
    """

    model_config = SettingsConfigDict(
        env_prefix="CONECTADO_", extra="forbid", validate_default=True, frozen=True
    )

    home: Path = Field(
        default=PROJECT_ROOT, description="Project folder; relative paths start here."
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL+PostGIS URL. Unset: the embedded cluster in pg_data_dir is used.",
    )
    pg_data_dir: Path = Field(default=Path("var/pg"), description="Embedded cluster data folder.")
    pg_port: int = Field(default=55432, ge=1024, le=65535, description="Embedded cluster port.")
    pg_bindir: Path | None = Field(
        default=None, description="PostgreSQL 15 binaries; default /usr/lib/postgresql/15/bin."
    )
    pg_os_user: str = Field(
        default="postgres", description="OS user that runs the embedded cluster when run as root."
    )
    data_dir: Path = Field(default=Path("data"), description="Shipped data (INEGI geography).")
    var_dir: Path = Field(default=Path("var"), description="Runtime state: spool, maps, logs.")

    probe_interval: int = Field(default=300, ge=1, description="Seconds between probes of a site.")
    probe_concurrency: int = Field(
        default=2000, ge=1, le=100_000, description="Probes in flight at once in a round."
    )
    snmp_timeout: float = Field(
        default=2.0, gt=0, le=60, description="Seconds to wait for one SNMP answer."
    )
    http_timeout: float = Field(
        default=5.0, gt=0, le=120, description="Total seconds allowed for one HTTP probe."
    )
    probe_retries: int = Field(
        default=1, ge=0, le=5, description="Retries of a probe that got no answer."
    )
    http_verify_tls: bool = Field(
        default=True,
        description="Check HTTPS certificates (expired, untrusted, wrong name = error class tls).",
    )
    http_ca_file: Path | None = Field(
        default=None,
        description="Extra CA certificates (PEM) trusted by HTTPS probes, e.g. var/lab/ca.pem.",
    )
    http_expect_keyword: str | None = Field(
        default=None, description="Text every HTTP probe body must contain (keyword_missing)."
    )
    http_max_body_bytes: int = Field(
        default=256 * 1024, ge=0, description="HTTP probes read at most this much of a body."
    )
    http_throughput_bytes: int = Field(
        default=0, ge=0, description="Bytes each HTTP probe downloads to measure Mbps (0: off)."
    )
    http_throughput_path: str = Field(
        default="",
        description="Path (may hold {n}) fetched for the throughput test instead of the probe "
        "URL's own, e.g. /bytes?n={n} on the lab agent.",
    )
    http_native: bool = Field(
        default=True,
        description="Plain http:// probes of IPv4 addresses run in the compiled loop of "
        "probes/native (built by make), with the same outcomes; false runs every HTTP probe in "
        "Python.",
    )
    snmp_native: bool = Field(
        default=True,
        description="SNMP v2c GETs of IPv4 agents run in the compiled loop of probes/native "
        "(built by make), with the same outcomes; false runs every SNMP probe in Python.",
    )
    http_process_min: int = Field(
        default=5000,
        ge=0,
        description="A round with at least this many HTTP probes runs them in a second process "
        "(another core) beside the SNMP probes; 0: never.",
    )
    spool_max_rounds: int = Field(
        default=288, ge=1, description="Rounds kept in the local spool while the DB is down."
    )
    spool_max_bytes: int = Field(
        default=4 * 1024**3, ge=1024, description="Bytes the local spool may hold."
    )
    raw_retention_days: int = Field(
        default=30, ge=1, description="Days of raw probe results kept (whole daily partitions)."
    )
    incident_failures: int = Field(default=3, ge=1, description="Failed rounds that open one.")
    incident_evaluation_gap_s: float = Field(
        default=15.0,
        ge=0,
        le=3600,
        description="Scheduler batches evaluate incidents at most this often (seconds; a batch "
        "that finds a younger evaluation leaves its results to the next); 0: after every batch.",
    )
    flap_changes: int = Field(default=4, ge=2, description="State changes per hour = flapping.")
    flap_window_s: int = Field(
        default=3600, ge=10, description="Window in which flap_changes state changes are counted."
    )
    probe_batches: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Batches a probe interval is split into (by site id); 0 = one batch per "
        "~2,500 active sites.",
    )
    municipal_outage_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of a municipality's active sites down together that opens one "
        "grouped municipal outage incident instead of one per site.",
    )
    municipal_outage_min_sites: int = Field(
        default=3, ge=1, description="Municipalities with fewer active sites are never grouped."
    )
    scheduler_workers: int = Field(
        default=4, ge=1, le=64, description="Threads that run scheduler jobs (batches, rollups)."
    )
    rollup_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Database connections that share the daily per-site rollup (by site id).",
    )
    coverage_radius_km: float = Field(
        default=5.0,
        gt=0,
        le=200,
        description="Coverage radius R: a locality within R km of a working site is covered.",
    )
    coverage_working_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 90,
        description="A probed site is working when its last successful probe is this recent.",
    )
    coverage_keep_runs: int = Field(
        default=20, ge=1, le=10_000, description="Coverage runs kept; older ones are pruned."
    )

    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of the API.")
    page_size_max: int = Field(
        default=1000, ge=1, description="Largest page a list endpoint returns."
    )
    api_workers: int = Field(
        default=2, ge=1, le=64, description="uvicorn worker processes of `conectado serve`."
    )
    api_pool_size: int = Field(
        default=8,
        ge=1,
        le=200,
        description="Database connections per API worker (plus as many overflow).",
    )
    api_key_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long a worker trusts a checked API key; a revoked key stops working "
        "within this time. 0 checks the database on every request.",
    )
    api_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="Lifetime of a page login (session cookie)."
    )
    api_docs_refresh_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How often each API worker rebuilds stale cached site JSON "
        "(api_site_docs); 0 turns it off (stale sites are then always serialised inline).",
    )
    api_map_cache_seconds: float = Field(
        default=120.0,
        ge=0,
        description="How long an API worker reuses a rendered health map (0: render each time).",
    )
    api_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Longest an API worker reuses a site card or site search while nothing "
        "is probed; an edit empties the cache at once (0: no cache).",
    )
    api_cache_probe_lag_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How late a reused card or search may show new probe results while "
        "rounds are being written.",
    )
    api_cache_mb: int = Field(
        default=128, ge=0, le=65536, description="Memory each API worker gives that cache."
    )
    api_cookie_secure: bool = Field(
        default=False,
        description="Mark the session cookie Secure (set true when served over HTTPS).",
    )
    tile_url: str = Field(
        default="https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Map tile template; empty string for a plain background.",
    )
    tile_attribution: str = Field(
        default="&copy; OpenStreetMap contributors",
        description="Attribution shown on maps for the tiles of tile_url.",
    )

    lab_snmp_port: int = Field(
        default=LAB_SNMP_PORT,
        ge=1,
        le=65535,
        description="UDP port of the lab's SNMP agent, named by a new `--lab` inventory.",
    )
    lab_http_port: int = Field(
        default=LAB_HTTP_PORT,
        ge=1,
        le=65535,
        description="TCP port of the lab's HTTP agent, named by a new `--lab` inventory.",
    )
    lab_https_port: int = Field(
        default=LAB_HTTPS_PORT,
        ge=1,
        le=65535,
        description="TCP port of the lab's HTTPS agent, named by a new `--lab` inventory.",
    )
    lab_native: bool = Field(
        default=True,
        description="Lab agents answer their common requests with the compiled fast paths of "
        "lab/native (built by make); false runs them in pure Python.",
    )

    @field_validator("pg_os_user")
    @classmethod
    def _user_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name an OS user")
        return value

    def path(self, value: Path) -> Path:
        """Return ``value`` made absolute against ``home``."""
        return value if value.is_absolute() else (self.home / value)

    @property
    def inegi_dir(self) -> Path:
        """Folder of the INEGI geography files."""
        return self.path(self.data_dir) / "inegi"

    @property
    def lab_ports(self) -> LabPorts:
        """The ports a new `--lab` inventory names for the lab's agents."""
        return LabPorts(self.lab_snmp_port, self.lab_http_port, self.lab_https_port)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
