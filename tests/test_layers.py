"""Convention tests that protect the design: one-way layers and nothing importing the wiring."""

from __future__ import annotations

import ast
from pathlib import Path

from core.settings import PROJECT_ROOT

PACKAGES = ["core", "db", "sites", "probes", "results", "geo", "maps", "api", "lab", "cli"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py")]


def test_nothing_imports_the_scheduler_module() -> None:
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for p in _modules()
        if "scheduler" in _imports(p) and p.parts[-2] != "cli"
    ]
    assert offenders == []


def test_only_maps_imports_folium() -> None:
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for p in _modules()
        if "folium" in _imports(p) and "maps" not in p.relative_to(PROJECT_ROOT).parts
    ]
    assert offenders == []


def test_domain_code_never_imports_fastapi() -> None:
    domain = ["core", "db", "sites", "probes", "results", "geo", "maps", "lab"]
    offenders = [
        str(p.relative_to(PROJECT_ROOT))
        for pkg in domain
        for p in (PROJECT_ROOT / pkg).rglob("*.py")
        if {"fastapi", "starlette"} & _imports(p)
    ]
    assert offenders == []
