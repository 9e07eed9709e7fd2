"""docker-compose.yml is accepted by Compose and wires every app service to the database."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from core.settings import PROJECT_ROOT


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian docker-compose missing")
def test_compose_file_is_valid_and_wired() -> None:
    out = subprocess.run(
        ["docker-compose", "config"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout
    config = yaml.safe_load(out)
    services = config["services"]
    assert services["db"]["image"].startswith("postgis/postgis:15")
    for name in ("api", "scheduler", "migrate"):
        assert "db:5432/conectado" in services[name]["environment"]["CONECTADO_DATABASE_URL"]
    assert services["api"]["build"]["context"]
    assert "pgdata" in config["volumes"]
