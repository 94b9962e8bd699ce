"""YAML from people is loaded with bounds: aliases, nesting and expanded size ("billion laughs")."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from metricloop.cli import app
from metricloop.definitions.service import read_text
from metricloop.definitions.yamlfile import load_text
from metricloop.errors import MetricloopError
from metricloop.limits import YAML_MAX_ALIASES, YAML_MAX_DEPTH, YAML_MAX_NODES
from metricloop.workspace import Workspace


def alias_bomb(levels: int = 9) -> str:
    """About 350 bytes that expand to 9**9 (387 million) strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_fast_and_small(tmp_path):
    """In a child process, so the old loader's minutes and gigabytes cannot take the test run down with it."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from metricloop.definitions.service import read_definitions\n"
        f"entries, problems = read_definitions([Path({str(bomb)!r})])\n"
        "print('\\n'.join(str(p) for p in problems))\n"
        "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    *problems, peak = done.stdout.strip().splitlines()
    assert len(problems) == 1
    assert problems[0].startswith(f"{bomb}:")
    assert f"more than {YAML_MAX_NODES:,} values through its aliases" in problems[0]
    # the same child reading a small good file: what the interpreter and its imports take, measured beside it
    good = tmp_path / "good.yaml"
    good.write_text("sources: []\n")
    base = subprocess.run([sys.executable, "-c", code.replace(str(bomb), str(good))], capture_output=True, text=True,
                          timeout=60)
    base_peak = int(base.stdout.strip().splitlines()[-1].split()[1])
    assert int(peak.split()[1]) - base_peak < 100  # MB beyond the baseline (the old loader took gigabytes)


def test_apply_names_the_file_and_changes_nothing(tmp_path, monkeypatch):
    Workspace.init(tmp_path / "ws").close()
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    result = CliRunner(env={"NO_COLOR": "1", "METRICLOOP_DB": None}).invoke(
        app, ["-w", str(tmp_path / "ws"), "apply", str(bomb)]
    )
    assert result.exit_code == 2
    assert "bomb.yaml:" in result.output and "through its aliases" in result.output


def test_too_many_aliases_are_refused_with_the_line():
    text = "base: &b 1\nlist: [" + ", ".join(["*b"] * (YAML_MAX_ALIASES + 1)) + "]\n"
    _, problems = read_text(text, file="many.yaml")
    (p,) = problems
    assert (p.file, p.line) == ("many.yaml", 2) and f"more than {YAML_MAX_ALIASES} aliases" in p.message
    ok, problems = load_text("base: &b 1\nlist: [" + ", ".join(["*b"] * YAML_MAX_ALIASES) + "]\n", "ok.yaml")
    assert problems == [] and ok.value["list"] == [1] * YAML_MAX_ALIASES


def test_deep_nesting_and_self_reference_are_refused():
    _, problems = load_text("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    assert [str(p) for p in problems] == [f"deep.yaml:1: nested more than {YAML_MAX_DEPTH} levels deep"]
    _, problems = load_text("a: &a [1, *a]\n", "loop.yaml")
    assert [str(p) for p in problems] == ["loop.yaml:1: an alias refers to the list or mapping it is inside"]


def test_merge_keys_and_non_scalar_keys():
    """`<<: *defaults` works (it was a crash), and a list as a key is a problem, not a stringified node."""
    located, problems = load_text("base: &b {x: 1, y: 0}\nm: {<<: *b, y: 2}\n", "m.yaml")
    assert problems == [] and located.value["m"] == {"x": 1, "y": 2}
    _, problems = load_text("? [1, 2]\n: 3\n", "k.yaml")
    assert [str(p) for p in problems] == ["k.yaml:1: a key must be a plain value, not a list or mapping"]


def test_the_workspace_file_is_loaded_with_the_same_bounds(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    ws.close()
    (tmp_path / "ws" / "metricloop.yaml").write_text(alias_bomb())
    with pytest.raises(MetricloopError) as e:
        Workspace.open(tmp_path / "ws")
    assert "metricloop.yaml:" in str(e.value) and "through its aliases" in str(e.value)
