"""Run a test module's SNMP tests on both v2c engines: import ``pytest_generate_tests`` and
``snmp_engine`` into the module.

"native" is the compiled loop for GETs of IPv4 agents (probes/native/snmp_fast.c) beside the
Python engine for the rest; "python" is the Python engine alone, which defines the behaviour.
Tests of SNMPv3 only (pysnmp) run once.
"""

from __future__ import annotations

import pytest

from probes.native import snmp_fast

ENGINES = ["native", "python"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the autouse ``snmp_engine`` fixture over ENGINES (v3-only tests: once)."""
    if "snmp_engine" not in metafunc.fixturenames:
        return
    once = "v3" in metafunc.function.__name__
    metafunc.parametrize("snmp_engine", ENGINES[:1] if once else ENGINES, indirect=True)


@pytest.fixture(autouse=True)
def snmp_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which engine runs the test's v2c probes: "native" or "python"."""
    kind: str = request.param
    if kind == "native":
        assert snmp_fast.fast_path_available(), (
            "probes/native/_snmp_fast.so is missing or older than snmp_fast.c: run make native"
        )
    else:
        monkeypatch.setattr(snmp_fast, "fast_path_available", lambda: False)
    return kind
