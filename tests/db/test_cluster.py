"""The embedded cluster manager against real PostgreSQL binaries."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.db import libpq_url
from core.errors import SetupError
from core.settings import Settings
from db.cluster import EmbeddedCluster, free_port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    cfg = Settings(pg_port=free_port(57000))
    c = EmbeddedCluster(cfg, data_dir=tmp_path / "pg", unsafe_fast=True)
    yield c
    c.destroy()


def test_lifecycle_start_status_url_stop(cluster: EmbeddedCluster) -> None:
    assert not cluster.status().initialised
    url = cluster.start()
    st = cluster.status()
    assert st.initialised and st.running and st.port == cluster.port
    out = subprocess.run(
        ["psql", libpq_url(url), "-Atc", "SELECT current_database(), current_setting('port')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == f"conectado|{cluster.port}"
    assert cluster.start() == url  # idempotent: reuses the running cluster
    assert cluster.stop() is True
    assert not cluster.running()
    assert cluster.stop() is False
    assert cluster.start() == url  # restarts on the recorded port


def test_does_not_touch_the_stock_server(cluster: EmbeddedCluster) -> None:
    cluster.start()
    assert cluster.port != 5432
    with psycopg.connect(libpq_url(cluster.url())) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
        ).fetchone()
        assert row == (1,)


def test_port_in_use_is_named(cluster: EmbeddedCluster) -> None:
    cluster.start()
    cluster.stop()
    port = cluster.port
    assert port is not None
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(SetupError, match=f"Port {port} on 127.0.0.1.*in use"):
            cluster.start()


def test_first_start_skips_a_taken_port(tmp_path: Path) -> None:
    wanted = free_port(57300)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", wanted))
        blocker.listen()
        c = EmbeddedCluster(Settings(pg_port=wanted), data_dir=tmp_path / "pg", unsafe_fast=True)
        try:
            c.start()
            assert c.port is not None and c.port != wanted
        finally:
            c.destroy()


def test_missing_binaries_name_the_packages(tmp_path: Path) -> None:
    c = EmbeddedCluster(Settings(pg_bindir=tmp_path / "nobin"), data_dir=tmp_path / "pg")
    with pytest.raises(SetupError, match="apt-get install postgresql-15 postgresql-15-postgis-3"):
        c.start()


def test_missing_postgis_names_the_package(tmp_path: Path) -> None:
    c = EmbeddedCluster(
        Settings(), data_dir=tmp_path / "pg", postgis_control=tmp_path / "postgis.control"
    )
    with pytest.raises(SetupError, match="apt-get install postgresql-15-postgis-3"):
        c.start()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a folder of another owner")
def test_folder_of_another_owner_is_named(tmp_path: Path) -> None:
    folder = Path("/var/lib/conectado-test-owner") / tmp_path.name
    folder.mkdir(parents=True)
    os.chown(folder, 65534, 65534)  # nobody
    try:
        c = EmbeddedCluster(Settings(), data_dir=folder)
        with pytest.raises(SetupError, match="belongs to user 'nobody'"):
            c.start()
    finally:
        folder.rmdir()


def test_nonempty_folder_without_cluster_is_refused(tmp_path: Path) -> None:
    c = EmbeddedCluster(Settings(), data_dir=tmp_path / "pg")
    c.data_dir.mkdir(parents=True)
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(c.data_dir, user.pw_uid, user.pw_gid)
    (c.data_dir / "stray.txt").write_text("x")
    with pytest.raises(SetupError, match="not empty and holds no PostgreSQL cluster"):
        c.start()
