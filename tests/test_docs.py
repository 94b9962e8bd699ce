"""Docs stay true to the code: every setting, command and definition field is documented."""

from pathlib import Path

import click
import pytest
import typer

from metricloop.cli import app
from metricloop.definitions.schemas import DuckDBSourceSpec, MetricSpec, Quality, SQLSourceSpec
from metricloop.settings import Settings

ROOT = Path(__file__).parent.parent


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(field):
    assert f"METRICLOOP_{field.upper()}" in _text("README.md")


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append(prefix + name)
    return out


@pytest.mark.parametrize("command", _commands(typer.main.get_command(app)))
def test_every_command_is_in_the_cli_reference(command):
    assert f"metricloop {command}" in _text("docs/cli.md") or f"`{command.split()[-1]} " in _text("docs/cli.md")


@pytest.mark.parametrize(
    "model", [MetricSpec, DuckDBSourceSpec, SQLSourceSpec, Quality], ids=lambda m: m.__name__
)
def test_every_definition_field_is_in_the_reference(model):
    doc = _text("docs/definitions.md")
    for name, info in model.model_fields.items():
        assert f"`{info.alias or name}`" in doc, f"{model.__name__}.{name} is not documented in docs/definitions.md"
