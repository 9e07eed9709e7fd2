"""Property-based tests of the whole OpenAPI schema (schemathesis 4) against real PostGIS.

Every operation gets generated requests (valid and invalid) with an admin key; the checks are:
no 5xx, documented status codes, content types and headers, and responses that match their
schema. Examples are bounded so the run stays well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, text

from api.app import create_app
from api.auth import Role, create_key
from core.db import make_engine
from core.settings import Settings
from db.cluster import EmbeddedCluster
from tests.api.conftest import scanned
from tests.api.seed import seed_all
from tests.conftest import _db_url, clone_database, drop_database

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_engine(test_cluster: EmbeddedCluster, template_db: str) -> Iterator[Engine]:
    """A database of this module's own, seeded once."""
    name = clone_database(test_cluster, template_db)
    engine = make_engine(_db_url(test_cluster, name))
    with engine.begin() as conn:
        seed_all(conn)
    yield engine
    engine.dispose()
    drop_database(test_cluster, name)


@pytest.fixture(scope="module")
def admin_token(fuzz_engine: Engine) -> str:
    """An admin key with an id random requests will not revoke."""
    with fuzz_engine.begin() as conn:
        conn.execute(text("ALTER SEQUENCE api_keys_id_seq RESTART WITH 900000001"))
        return create_key(conn, name="fuzz-admin", role=Role.ADMIN, created_by="t").token


@pytest.fixture(scope="module")
def api_schema(fuzz_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = fuzz_engine.url.render_as_string(hide_password=False)
    cfg = Settings(
        database_url=url,
        var_dir=Path(tmp_path_factory.mktemp("fuzz")),
        api_key_cache_seconds=60,
        api_docs_refresh_seconds=0,
    )
    app = create_app(cfg, engine=fuzz_engine)
    return schemathesis.openapi.from_asgi("/openapi.json", scanned(app))


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document (built without a database)."""
    offline = create_app(Settings(database_url="postgresql://none@127.0.0.1:1/none"))
    paths = offline.openapi()["paths"]
    return [(m.upper(), p) for p, item in paths.items() for m in item]


# Computing coverage takes seconds per call: a few examples of it are enough.
EXAMPLES = {
    ("POST", "/api/coverage/runs"): 2,
    ("GET", "/api/coverage/export"): 3,
    ("GET", "/api/coverage/localities"): 6,
}


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(
    api_schema: Any, admin_token: str, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    examples = EXAMPLES.get((method, path), 12)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers={"X-API-Key": admin_token}, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.NEGATIVE:
            pytest.skip("no invalid request can be expressed for this operation")
        raise
