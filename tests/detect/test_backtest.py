"""Backtest over the demo workspace, scored against the demo's ground truth (data/labels.csv)."""

import datetime as dt

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from metricloop.detect.backtest import backtest
from metricloop.detect.calendar import Calendar, read_events
from metricloop.detect.scoring import read_labels


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from metricloop.definitions import service
    from metricloop.demo.generate import generate
    from metricloop.demo.setup import demo_definitions
    from metricloop.metrics.validate import reference_check
    from metricloop.workspace import Workspace

    home = tmp_path_factory.mktemp("demo")
    ws = Workspace.init(home)
    generate(home, scale=0.05, end=dt.date(2026, 11, 20))
    defs = ws.defs_dir / "demo.yaml"
    defs.write_text(demo_definitions(None), encoding="utf-8")
    entries, problems = service.read_definitions([defs])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="test", checks=[reference_check])
    return ws, home


def test_backtest_scores_the_demo_ground_truth(demo):
    ws, home = demo
    labels = read_labels(home / "data" / "labels.csv")
    cal = Calendar(read_events(home / "data" / "promotions.csv"))
    res = backtest(ws, "fulfilment_rate", by=["region"], detector="auto", calendar=cal, labels=labels)
    assert res.series[0] == "" and "region=East" in res.series
    s = res.score
    assert s is not None and s.labels == 6  # three carrier delays × (region, total)
    assert s.recall >= 0.5 and s.precision >= 0.5
    assert s.alerts_per_series_per_month < 0.2
    an = res.anomalies
    assert {"time", "slice", "actual", "expected", "lower", "upper", "explanation_zh", "explanation_en"} <= set(an)
    assert (an["direction"] == "down").all()  # good direction up → alert on drops


def test_planned_promotions_do_not_alert(demo):
    ws, home = demo
    labels = read_labels(home / "data" / "labels.csv")
    cal = Calendar(read_events(home / "data" / "promotions.csv"))
    res = backtest(ws, "gmv", by=["category"], detector="auto", config={"direction": "both"}, calendar=cal,
                   labels=labels)
    promos = labels[(labels["kind"] == "promotion") & (labels["metric"] == "gmv")]
    for p in promos.itertuples():
        hits = res.anomalies[(res.anomalies["slice"] == p.slice) & (res.anomalies["time"] >= p.start)
                             & (res.anomalies["time"] < p.end)]
        assert hits.empty, f"planned promotion {p.slice} {p.start:%Y-%m-%d} raised an alert"


def test_backtest_command(demo, monkeypatch):
    ws, home = demo
    from metricloop import cli, cli_detect

    monkeypatch.setattr(cli.state, "home", home)
    app = typer.Typer()
    cli_detect.register(app)
    r = CliRunner().invoke(app, ["backtest", "--metric", "stockout_rate", "--by", "store", "--labels",
                                 str(home / "data" / "labels.csv"), "--events", str(home / "data" / "promotions.csv"),
                                 "--output", str(home / "an.csv")])
    assert r.exit_code == 0, r.output
    assert "nothing was sent" in r.output and "event-level precision" in r.output
    assert len(pd.read_csv(home / "an.csv")) >= 1
