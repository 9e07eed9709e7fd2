"""API test fixtures: an app on a real PostGIS clone, keys for every role, seeded sites."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.auth import Role, create_key
from core.settings import Settings
from lab.inventory import LabInventory, read_lab_inventory
from lab.runner import start_lab, stop_lab
from tests.api.seed import SECRETS, seed_all
from tests.ports import free_port
from tests.results.lab_sites import write_lab_csv


@pytest.fixture
def api_settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings on this test's database; keys checked and responses built on every request.

    Tests here often write the database directly and read through the API at once; the read
    cache (which would show such a write a few milliseconds later) has its own tests in
    test_cache.py.
    """
    return Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        api_key_cache_seconds=0,
        api_cache_seconds=0,
        api_docs_refresh_seconds=0,
    )


@pytest.fixture
def role_keys(engine: Engine) -> dict[Role, str]:
    """One API key token per role."""
    with engine.begin() as conn:
        return {
            role: create_key(conn, name=f"test-{role.value}", role=role, created_by="test").token
            for role in Role
        }


@pytest.fixture
def app(api_settings: Settings, engine: Engine) -> FastAPI:
    """The API app on this test's database."""
    return create_app(api_settings, engine=engine)


PLANTED = (*SECRETS, "api-secret-community", "s3cr3t-one", "s3cr3t-two")


class SecretScanner:
    """ASGI wrapper recording every response whose body or headers hold a planted secret.

    A secret the request itself carried (a client echoing a value it sent) is not a leak.
    """

    responses = 0
    violations: list[str] = []  # noqa: RUF012 - one list for the whole test session

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = [scope["path"].encode(), scope.get("query_string", b"")]
        sent += [v for _, v in scope.get("headers", [])]
        chunks: list[bytes] = []

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                sent.append(message.get("body", b""))
            return message

        async def scanning_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                chunks.extend(v for _, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, recording_receive, scanning_send)
        body = b"".join(chunks)
        request = b"".join(sent)
        SecretScanner.responses += 1
        for secret in PLANTED:
            if secret.encode() in body and secret.encode() not in request:
                SecretScanner.violations.append(f"{scope['method']} {scope['path']}: {secret}")


def scanned(app: FastAPI) -> Any:
    """``app`` behind the secret scanner."""
    return SecretScanner(app)


@pytest.fixture(autouse=True)
def no_secret_leaves(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if any response or log line it produced holds a planted secret."""
    before = len(SecretScanner.violations)
    yield
    leaked = SecretScanner.violations[before:]
    assert not leaked, f"secrets in responses: {leaked}"
    logged = [s for s in PLANTED if s in caplog.text]
    assert not logged, f"secrets in logs: {logged}"


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A test client (lifespan run) with no key; every response is scanned for secrets."""
    with TestClient(scanned(app), raise_server_exceptions=False) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    """Headers carrying ``token`` as an API key."""
    return {"X-API-Key": token}


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """This test's database with the seeded sites, status, history and incidents."""
    with engine.begin() as conn:
        seed_all(conn)
    return engine


@dataclass
class ApiLab:
    """Lab agents on loopback for a handful of sites, and which of them behave well."""

    rows: list[dict[str, str]]
    inventory: LabInventory
    ca_file: Path
    healthy: list[str]
    down: list[str]


@pytest.fixture(scope="session")
def api_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiLab]:
    """Real lab SNMP and HTTP agents (background processes) answering for 60 sites."""
    tmp = tmp_path_factory.mktemp("api-lab")
    lab_settings = Settings(var_dir=tmp / "var")
    snmp_port = free_port(socket.SOCK_DGRAM)
    http_port, https_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    rows = write_lab_csv(
        tmp / "lab.csv",
        60,
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
        https_every=0,
        first=90_000,
    )
    state = start_lab(
        lab_settings,
        tmp / "lab.csv",
        snmp_port=snmp_port,
        http_port=http_port,
        https_port=https_port,
    )
    inventory = read_lab_inventory(tmp / "lab.csv")
    healthy, down = [], []
    for i, row in enumerate(rows):
        b = inventory.behaviour(i)
        if b.down:
            down.append(row["site_key"])
        elif (
            b.flap_period_s is None
            and b.slow_delay_s < 0.2
            and b.wan_oper_status == 1
            and b.http_status == 200
            and not b.fast_rebooter
            and row["wan_if_index"]
        ):
            healthy.append(row["site_key"])
    try:
        yield ApiLab(rows, inventory, Path(state.ca_file), healthy, down)
    finally:
        stop_lab(lab_settings)


@pytest.fixture
def lab_settings(db_url: str, tmp_path: Path, api_lab: ApiLab) -> Settings:
    """API settings on this test's database that trust the lab's CA."""
    return Settings(
        database_url=db_url,
        var_dir=tmp_path / "var",
        api_key_cache_seconds=0,
        api_cache_seconds=0,
        api_docs_refresh_seconds=0,
        http_ca_file=api_lab.ca_file,
        snmp_timeout=1.0,
        http_timeout=2.0,
    )
