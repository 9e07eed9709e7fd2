"""CLI errors are for people: what went wrong and what to run, not a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.app import app
from cli.scheduler import short_error
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


def test_incident_errors_are_shortened_to_kind_and_class_keeping_short_details() -> None:
    long = (
        "snmp timeout: no answer to the GET after 2 attempt(s) of 2 s (a v2c agent also stays "
        "silent when the community is wrong); http refused: connection reset (Connection reset "
        "by peer)"
    )
    assert short_error(long) == "snmp timeout; http refused"
    assert short_error("http http_status: HTTP status 503") == "http http_status: HTTP status 503"
    assert short_error(
        "snmp WAN interface ifOperStatus 2 (not up); http tls: certificate not "
        "accepted: certificate has expired"
    ) == ("snmp WAN interface ifOperStatus 2 (not up); http tls")
    assert short_error(None) == "" and short_error("") == ""
