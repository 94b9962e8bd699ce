"""`metricloop rca` on files, as a user runs it (a real subprocess of the installed CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_drilldown import cube, hit


def rca(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "metricloop", "rca", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


def test_file_to_json(tmp_path):
    f = cube(1)
    f.loc[hit(f, region="region1", channel="channel3"), "actual"] *= 0.3
    f.to_csv(tmp_path / "case.csv", index=False)
    out = tmp_path / "out.json"
    p = rca(tmp_path / "case.csv", "--actual", "actual", "--expected", "expected", "--output", out)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert [c["dimensions"] for c in doc["causes"]] == [{"region": "region1", "channel": "channel3"}]
    assert set(doc["causes"][0]) >= {"dimensions", "actual", "expected", "share", "deviation_pct"}
    table = rca(tmp_path / "case.csv", "--actual", "actual", "--expected", "expected")
    assert "region=region1 & channel=channel3" in table.stdout


def test_folder_mirrors_into_json_files(tmp_path):
    (tmp_path / "in" / "b").mkdir(parents=True)
    for i, name in enumerate(["a.csv", "b/c.csv"]):
        f = cube(20 + i)
        f.loc[hit(f, category="category1"), "actual"] *= 0.5
        f.to_csv(tmp_path / "in" / name, index=False)
    (tmp_path / "in" / "bad.csv").write_text("region,actual\nx,1\n")
    p = rca(tmp_path / "in", "--actual", "actual", "--expected", "expected", "--output", tmp_path / "out")
    assert p.returncode == 1  # one file failed, and says why
    assert "bad.csv" in p.stderr and "no column 'expected'" in p.stderr
    for name in ["a.json", "b/c.json"]:
        doc = json.loads((tmp_path / "out" / name).read_text())
        assert doc["causes"][0]["dimensions"] == {"category": "category1"}


def test_clear_errors(tmp_path):
    p = rca(tmp_path / "nothing.csv", "--actual", "a", "--expected", "e")
    assert p.returncode == 2 and "no such file" in p.stderr
    cube().to_csv(tmp_path / "c.csv", index=False)
    p = rca(tmp_path / "c.csv", "--actual-num", "x")
    assert p.returncode == 2 and "all four" in p.stderr
    p = rca(tmp_path / "c.csv")
    assert p.returncode == 2 and "--actual COL --expected COL" in p.stderr
    p = rca(tmp_path / "c.csv", "--actual", "actual", "--expected", "expected", "--dims", "region,nope")
    assert p.returncode == 2 and "'nope'" in p.stderr


def test_no_deviation_says_so(tmp_path):
    cube(30).to_csv(tmp_path / "c.csv", index=False)
    p = rca(tmp_path / "c.csv", "--actual", "actual", "--expected", "expected")
    assert p.returncode == 0 and "no significant deviation" in p.stdout
