"""The README documents every setting, and its two set-up commands are the Makefile's."""

from __future__ import annotations

import re

from core.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_setting() -> None:
    documented = set(re.findall(r"`(CONECTADO_[A-Z0-9_]+)`", README))
    settings = {"CONECTADO_" + name.upper() for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README"
    assert documented - settings == set(), "README names settings that do not exist"


def test_readme_setup_is_exactly_the_two_make_commands() -> None:
    setup = README.split("## Set-up", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
