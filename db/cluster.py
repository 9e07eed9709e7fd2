"""The embedded PostgreSQL 15 + PostGIS 3 cluster that runs in a folder of the project."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import SetupError
from core.settings import Settings

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")
POSTGIS_CONTROL = Path("/usr/share/postgresql/15/extension/postgis.control")
DB_NAME = "conectado"
DB_USER = "conectado"
PORT_FILE = "conectado.port"

SERVER_CONF = """
# Written by conectado's embedded cluster manager.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 4GB
checkpoint_timeout = 15min
synchronous_commit = off
random_page_cost = 1.1
jit = off
log_min_messages = warning
log_min_error_statement = error
"""

FAST_UNSAFE_CONF = """
# Test clusters: durability traded for speed; never used for the default cluster.
fsync = off
full_page_writes = off
"""


@dataclass(frozen=True)
class ClusterStatus:
    """What ``conectado db status`` reports."""

    data_dir: Path
    initialised: bool
    running: bool
    port: int | None
    url: str | None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int) -> int:
    """Return ``preferred`` if free, else the next free port above it (within 200)."""
    for port in range(preferred, min(preferred + 200, 65535)):
        if port_is_free(port):
            return port
    raise SetupError(f"No free TCP port between {preferred} and {preferred + 199} on 127.0.0.1.")


class EmbeddedCluster:
    """Create, start, stop and describe the project's own PostgreSQL cluster.

    PostgreSQL refuses to run as root, so when we are root the cluster runs as
    ``settings.pg_os_user`` (Debian's ``postgres``) and its folder belongs to that user.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path | None = None,
        unsafe_fast: bool = False,
        postgis_control: Path = POSTGIS_CONTROL,
    ) -> None:
        self.settings = settings
        self.postgis_control = postgis_control
        self.bindir = settings.pg_bindir or DEFAULT_BINDIR
        self.unsafe_fast = unsafe_fast
        wanted = data_dir or settings.path(settings.pg_data_dir)
        self.data_dir = self._reachable_data_dir(wanted.resolve())
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"

    # -- who runs it ------------------------------------------------------------------------
    @property
    def as_root(self) -> bool:
        """True when we must hand the server to an unprivileged OS user."""
        return os.geteuid() == 0

    def _os_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.settings.pg_os_user)
        except KeyError as exc:
            raise SetupError(
                f"Running as root, the embedded PostgreSQL must run as OS user "
                f"'{self.settings.pg_os_user}', which does not exist. Install postgresql-15 "
                f"(it creates 'postgres') or set CONECTADO_PG_OS_USER."
            ) from exc

    def _reachable_data_dir(self, wanted: Path) -> Path:
        """Keep ``wanted`` unless root's server user cannot reach it (e.g. a clone in /root)."""
        if os.geteuid() != 0:
            return wanted
        try:
            user = pwd.getpwnam(self.settings.pg_os_user)
        except KeyError:
            return wanted
        for parent in list(reversed(wanted.parents)):
            if not parent.exists():
                break
            st = parent.stat()
            if st.st_uid == user.pw_uid:
                continue
            if not (st.st_mode & 0o001):
                digest = hashlib.sha1(str(wanted).encode()).hexdigest()[:10]
                return Path("/var/lib/conectado") / digest / wanted.name
        return wanted

    def _run(
        self, args: list[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", self.settings.pg_os_user, "--", *cmd]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd="/", check=False
            )
        except FileNotFoundError as exc:
            raise SetupError(
                f"{cmd[0]} was not found. Install Debian packages postgresql-15 and "
                f"postgresql-15-postgis-3 (apt-get install postgresql-15 postgresql-15-postgis-3) "
                f"or set CONECTADO_PG_BINDIR."
            ) from exc
        if check and proc.returncode != 0:
            raise SetupError(
                f"{args[0]} failed for the cluster in {self.data_dir}: "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}",
                detail=" ".join(cmd),
            )
        return proc

    # -- checks -----------------------------------------------------------------------------
    def check_binaries(self) -> None:
        """Raise SetupError naming the packages when PostgreSQL 15 or PostGIS 3 is missing."""
        if not (self.bindir / "postgres").exists():
            raise SetupError(
                f"PostgreSQL 15 server binaries are missing ({self.bindir}/postgres). "
                "Install them: apt-get install postgresql-15 postgresql-15-postgis-3"
            )
        if not self.postgis_control.exists():
            raise SetupError(
                "PostGIS 3 for PostgreSQL 15 is missing "
                f"({self.postgis_control} not found). "
                "Install it: apt-get install postgresql-15-postgis-3"
            )

    def _check_ownership(self) -> None:
        if not self.data_dir.exists():
            return
        owner = self.data_dir.stat().st_uid
        expected = self._os_user().pw_uid if self.as_root else os.geteuid()
        if owner != expected:
            try:
                name = pwd.getpwuid(owner).pw_name
            except KeyError:
                name = str(owner)
            raise SetupError(
                f"The database folder {self.data_dir} belongs to user '{name}', but the server "
                f"must run as '{pwd.getpwuid(expected).pw_name}'. Change its owner "
                f"(chown -R {pwd.getpwuid(expected).pw_name} {self.data_dir}) or point "
                "CONECTADO_PG_DATA_DIR at another folder."
            )

    # -- state ------------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        """True when the data folder holds a cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def port(self) -> int | None:
        """The port recorded for this cluster at creation, if any."""
        path = self.data_dir / PORT_FILE
        with contextlib.suppress(FileNotFoundError, ValueError, PermissionError):
            return int(path.read_text().strip())
        return None

    def url(self) -> str:
        """The SQLAlchemy URL of the cluster's application database."""
        if self.port is None:
            raise SetupError(f"No embedded cluster in {self.data_dir}; run `conectado db start`.")
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def running(self) -> bool:
        """True when the cluster's postmaster is alive."""
        if not self.initialised:
            return False
        proc = self._run(["pg_ctl", "status", "-D", str(self.data_dir)], check=False)
        return proc.returncode == 0

    def status(self) -> ClusterStatus:
        """Describe the cluster without changing it."""
        running = self.running()
        return ClusterStatus(
            self.data_dir, self.initialised, running, self.port, self.url() if self.port else None
        )

    # -- lifecycle --------------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster (first time only): initdb, config, the recorded port."""
        self.check_binaries()
        self._check_ownership()
        if self.initialised:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise SetupError(
                f"{self.data_dir} is not empty and holds no PostgreSQL cluster. "
                "Empty it or set CONECTADO_PG_DATA_DIR to a new folder."
            )
        if self.as_root:
            user = self._os_user()
            for path in [self.data_dir, *self.data_dir.parents]:
                if path == Path("/") or path.stat().st_uid == user.pw_uid:
                    break
                if path == self.data_dir or path.is_relative_to(Path("/var/lib/conectado")):
                    os.chown(path, user.pw_uid, user.pw_gid)
            os.chmod(self.data_dir, 0o700)
        self._run(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                DB_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            timeout=300,
        )
        port = free_port(self.settings.pg_port)
        conf = SERVER_CONF + (FAST_UNSAFE_CONF if self.unsafe_fast else "") + f"port = {port}\n"
        self._write_as_owner(self.data_dir / "postgresql.auto.conf", conf)
        self._write_as_owner(self.data_dir / PORT_FILE, f"{port}\n")

    def _write_as_owner(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.as_root:
            user = self._os_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    def start(self) -> str:
        """Initialise if needed, start if stopped, create the database; return its URL."""
        self.init()
        if not self.running():
            port = self.port
            assert port is not None
            if not port_is_free(port):
                raise SetupError(
                    f"Port {port} on 127.0.0.1, recorded for the embedded cluster in "
                    f"{self.data_dir}, is in use by another program. Stop that program, or "
                    f"edit 'port' in {self.data_dir}/postgresql.auto.conf and {PORT_FILE}."
                )
            if self.as_root:
                self.log_file.touch(exist_ok=True)
                user = self._os_user()
                os.chown(self.log_file, user.pw_uid, user.pw_gid)
            proc = self._run(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "120",
                ],
                check=False,
                timeout=180,
            )
            if proc.returncode != 0:
                tail = ""
                with contextlib.suppress(OSError):
                    tail = "\n".join(self.log_file.read_text().splitlines()[-8:])
                raise SetupError(
                    f"The embedded PostgreSQL in {self.data_dir} did not start. "
                    f"Last lines of {self.log_file}:\n{tail}"
                )
        self._wait_ready()
        self._ensure_database()
        return self.url()

    def _psql(self, sql: str, database: str = "postgres") -> str:
        proc = self._run(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                DB_USER,
                "-d",
                database,
                "-c",
                sql,
            ]
        )
        return proc.stdout.strip()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SetupError(f"The embedded PostgreSQL on port {self.port} is not ready.")
            time.sleep(0.2)

    def _ensure_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'")
        if exists != "1":
            self._psql(f'CREATE DATABASE "{DB_NAME}"')

    def stop(self) -> bool:
        """Stop the cluster (fast shutdown); return True if it was running."""
        if not self.running():
            return False
        self._run(
            ["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "120"],
            timeout=180,
        )
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete its folder (tests and `db reset` only)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
