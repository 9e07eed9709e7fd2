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


def test_every_command_the_readme_shows_exists() -> None:
    # Typer collapses a group of one command into that command, which once made the README's
    # (and docker-compose's) `conectado geo load` an error.
    import typer
    from typer._click import Context
    from typer.core import TyperGroup

    from cli.app import app

    block = README.split("## Command line", 1)[1].split("```", 2)[1]
    commands: list[tuple[str, str]] = []
    for group, subs in re.findall(r"conectado ([a-z]+)(?: ([a-z|]+))?", block):
        commands += [(group, sub) for sub in subs.split("|")] if subs else [(group, "")]
    assert ("geo", "load") in commands and len(commands) > 30
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    with Context(root) as ctx:
        for group, sub in commands:
            command = root.get_command(ctx, group)
            assert command is not None, f"conectado {group} does not exist"
            if sub:
                assert isinstance(command, TyperGroup), f"conectado {group} takes no {sub}"
                with Context(command, parent=ctx) as inner:
                    found = command.get_command(inner, sub)
                assert found is not None, f"conectado {group} {sub} does not exist"
