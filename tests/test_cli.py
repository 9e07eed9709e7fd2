"""CLI errors are for people: what went wrong and what to run, not a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.app import app
from db.cluster import EmbeddedCluster
from tests.conftest import _db_url, clone_database, drop_database


def test_a_database_never_migrated_gets_a_message_naming_the_fix(
    test_cluster: EmbeddedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = clone_database(test_cluster, "template0")  # empty: no tables at all
    try:
        monkeypatch.setenv("CONECTADO_DATABASE_URL", _db_url(test_cluster, name))
        monkeypatch.setenv("COLUMNS", "200")
        result = CliRunner().invoke(app, ["keys", "list"])
    finally:
        drop_database(test_cluster, name)
    assert result.exit_code == 1
    assert "Database not set up" in result.output and "conectado db migrate" in result.output
    assert "Traceback" not in result.output
