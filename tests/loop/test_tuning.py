"""Tuning a monitor from its feedback: the search, per-slice overrides, versions and rollback, the API, the weekly
job, and the bad input of issue 12 (no feedback at all; a suggestion applied after someone else edited the monitor)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import tuning_helpers as th
from fastapi.testclient import TestClient
from loop_helpers import apply_yaml
from sqlalchemy import select
from typer.testing import CliRunner

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.cli import app as cli_app
from metricloop.detect.conditions import apply_conditions
from metricloop.errors import DefinitionError, MetricloopError
from metricloop.tuning import service
from metricloop.tuning.models import TuningSuggestion
from metricloop.tuning.search import Judge, Search

AT = datetime(2026, 11, 21, 9)  # metric-local: the morning after the data ends


@pytest.fixture
def noisy(tmp_path, state_url, open_ws):
    def make(*, labels: bool = True, extra: str = ""):
        home = tmp_path / "noisy"
        th.write_data(home)
        ws = open_ws(home, state_url)
        apply_yaml(ws, th.DEFS + extra)
        if labels:
            with ws.db.session() as s:
                th.true_labels(s)
        return ws

    return make


def _version(ws, name="noisy_sales") -> int:
    from metricloop.db.models import Definition

    with ws.db.session() as s:
        return s.scalar(select(Definition.version).where(Definition.kind == "monitor", Definition.name == name))


def test_tune_keeps_confirmed_catches_missed_and_drops_the_noisy_slice(noisy):
    ws = noisy()
    t = service.compute(ws, "noisy_sales", at=AT, budget="2/series/month")
    assert t.before["false_alarms"] == 9 and t.before["false_alarms_removed"] == 0
    assert t.after["confirmed_kept"] == t.after["confirmed"] == 3
    assert t.after["missed_caught"] == t.after["missed"] == 1
    assert t.after["false_alarms_removed"] == 9
    assert t.after["alerts"] < t.before["alerts"] and not t.tradeoff
    # the noisy store gets knobs of its own; the other stores' one-day and two-day drops still alert
    assert [o["slice"] for o in t.overrides] == ["store=N1"]
    assert t.proposed_spec["overrides"][0]["slice"] == "store=N1"
    gone = {(a["slice"], a["label"]) for a in t.disappear}
    assert ("store=N1", "false_alarm") in gone and not any(a["label"] == "confirmed" for a in t.disappear)


def test_the_sweep_judges_exactly_as_a_run_does(noisy):
    """Flags swept over stored scores equal apply_conditions with the same knobs (what a run computes)."""
    ws = noisy(labels=False)
    catalog = ws.catalog()
    monitor = catalog.get("monitor", "noisy_sales")
    hist = service.load_history(ws, monitor, catalog=catalog, at=AT)
    variants = service.score_variants(ws, monitor, hist, catalog=catalog)
    search = Search(variants, service.base_setting(variants[0].config), Judge([], len(hist.names), hist.months),
                    2.0, "up")
    total = int(np.prod([len(v) for v in search.grid().values()]))
    picked = set(np.random.default_rng(0).choice(total, 25, replace=False))
    checked = 0
    for n, (setting, mask) in enumerate(search.masks()):
        if n not in picked:
            continue
        var = variants[setting.variant]
        det = apply_conditions(var.scores, var.config.model_copy(update=setting.knobs()), good_direction="up")
        assert np.array_equal(det.is_anomaly, mask), setting
        checked += 1
    assert checked == 25


def test_apply_makes_a_version_that_rollback_undoes_and_runs_honour_the_override(noisy):
    from metricloop.definitions import service as definitions
    from metricloop.monitors.service import manual_run

    ws = noisy()
    v0 = _version(ws)
    row, t = service.suggest(ws, "noisy_sales", at=AT, actor="ann")
    assert row.status == "open" and row.base_version == v0
    applied = service.apply_suggestion(ws, "noisy_sales", actor="boss")
    assert applied.status == "applied" and applied.applied_version == v0 + 1 == _version(ws)
    spec = ws.catalog().get("monitor", "noisy_sales")
    assert [o.slice for o in spec.overrides] == ["store=N1"]
    with ws.db.session() as s:
        hist = definitions.history(s, kind="monitor", name="noisy_sales")
        assert hist[-1].author == "boss" and "overrides" in hist[-1].diff
        assert hist[-1].comment == f"tuning suggestion #{row.id}"
    # a backtest run on the day after a glitch: the noisy store's two-day dip no longer flags
    glitch = th.GLITCHES[-1]
    day_after = datetime(glitch.year, glitch.month, glitch.day, 9) + timedelta(days=2)
    run = manual_run(ws, "noisy_sales", at=day_after.replace(tzinfo=None), now=datetime(2026, 11, 21, 3, tzinfo=UTC))
    assert run.status == "ok" and not [f for f in run.details["would_flag"] if f["slice"] == "store=N1"]
    with ws.db.session() as s:
        definitions.rollback(s, kind="monitor", name="noisy_sales", version=v0, author="boss")
    assert ws.catalog().get("monitor", "noisy_sales").overrides == []
    run = manual_run(ws, "noisy_sales", at=day_after.replace(tzinfo=None), now=datetime(2026, 11, 21, 3, tzinfo=UTC))
    assert [f for f in run.details["would_flag"] if f["slice"] == "store=N1"]  # the override was what stopped it
    with pytest.raises(service.TuningConflict, match="is applied"):
        service.apply_suggestion(ws, "noisy_sales", actor="boss", suggestion_id=row.id)


def test_a_suggestion_applied_after_someone_edited_the_monitor_is_refused_with_the_diff(noisy):
    ws = noisy()
    row, _ = service.suggest(ws, "noisy_sales", at=AT, actor="ann")
    apply_yaml(ws, th.DEFS.replace("sensitivity: 9", "sensitivity: 8"), author="carol")
    with pytest.raises(service.TuningConflict) as err:
        service.apply_suggestion(ws, "noisy_sales", actor="boss", suggestion_id=row.id)
    text = str(err.value)
    assert "changed since suggestion" in text and "carol" in text
    assert "-  sensitivity: 9" in text and "+  sensitivity: 8" in text
    assert ws.catalog().get("monitor", "noisy_sales").detector["sensitivity"] == 8  # nothing written
    with ws.db.session() as s:
        assert s.get(TuningSuggestion, row.id).status == "open"


def test_tune_with_no_feedback_says_so_and_holds_to_the_budget_alone(noisy, monkeypatch):
    ws = noisy(labels=False)
    t = service.compute(ws, "noisy_sales", at=AT, budget=0.05)
    assert t.no_feedback and "no feedback" in t.notes[0]["en"] and "反馈" in t.notes[0]["zh"]
    assert t.before["alerts_per_series_per_month"] > 0.05 >= t.after["alerts_per_series_per_month"]
    assert t.changed
    # and from the CLI, in both languages
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    result = CliRunner().invoke(cli_app, ["tune", "noisy_sales", "--budget", "0.05/series/month"])
    assert result.exit_code == 0, result.output
    assert "no feedback yet" in result.output and "还没有任何反馈" in result.output
    assert "Alerts per month" in result.output and "每月告警" in result.output
    result = CliRunner().invoke(cli_app, ["tune", "noisy_sales", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tuning"]["no_feedback"] is True


def test_bad_budget_and_bad_overrides_say_what_and_where(noisy):
    ws = noisy(labels=False)
    for bad in ("lots", "2/store/week", "0", "-1", "nan"):
        with pytest.raises(MetricloopError) as err:
            service.parse_budget(bad)
        assert err.value.where == "--budget"
    with pytest.raises(DefinitionError, match="does not slice by"):
        apply_yaml(ws, th.DEFS + "    overrides: [{slice: 'region=East', sensitivity: 2}]\n")
    with pytest.raises(DefinitionError, match="at least one knob"):
        apply_yaml(ws, th.DEFS + "    overrides: [{slice: 'store=N1'}]\n")
    with pytest.raises(DefinitionError, match="has an override already"):
        apply_yaml(ws, th.DEFS + "    overrides: [{slice: 'store=N1', sensitivity: 2}, "
                                 "{slice: 'store=N1', min_duration: 3}]\n")


def test_tuning_api(noisy):
    ws = noisy()
    with ws.db.session() as s:
        admin = create_token(s, name="root", role="admin", user="boss@shop.test")
        operator = create_token(s, name="ops", role="operator", user="ann@shop.test")
        viewer = create_token(s, name="look", role="viewer")
    client = TestClient(create_app(ws), headers={"Authorization": f"Bearer {viewer}"})
    op, root = {"Authorization": f"Bearer {operator}"}, {"Authorization": f"Bearer {admin}"}
    r = client.get("/api/monitors/noisy_sales/tuning")
    assert r.status_code == 404 and "no tuning suggestion yet" in r.json()["error"]
    assert client.get("/api/monitors/nope/tuning").status_code == 404
    assert client.post("/api/monitors/noisy_sales/tuning", json={}).status_code == 403  # a viewer
    r = client.post("/api/monitors/noisy_sales/tuning", json={"budget": "many"}, headers=op)
    assert r.status_code == 400 and r.json()["where"] == "budget"
    assert client.post("/api/monitors/noisy_sales/tuning", json={"action": "burn"}, headers=op).status_code == 422
    r = client.post("/api/monitors/noisy_sales/tuning", json={"action": "compute"}, headers=op)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] == "open" and first["tuning"]["after"]["false_alarms_removed"] == 9
    got = client.get("/api/monitors/noisy_sales/tuning").json()
    assert got["id"] == first["id"] and got["tuning"]["before"]["false_alarms"] == 9
    assert client.post("/api/monitors/noisy_sales/tuning", json={"action": "approve"}, headers=op).status_code == 403
    r = client.post("/api/monitors/noisy_sales/tuning", json={"action": "reject", "note": "not now"}, headers=op)
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    r = client.post("/api/monitors/noisy_sales/tuning", json={"action": "approve"}, headers=root)
    assert r.status_code == 409 and "rejected" in r.json()["error"]
    second = client.post("/api/monitors/noisy_sales/tuning", json={}, headers=op).json()
    r = client.post("/api/monitors/noisy_sales/tuning", json={"action": "approve", "suggestion": second["id"]},
                    headers=root)
    assert r.status_code == 200 and r.json()["status"] == "applied" and r.json()["decided_by"] == "boss@shop.test"
    assert client.get("/api/monitors/noisy_sales").json()["overrides"][0]["slice"] == "store=N1"
    with ws.db.session() as s:
        assert [o.id for o in service.open_suggestions(s)] == []


def test_weekly_suggests_for_poor_precision_and_auto_tune_applies(noisy):
    from metricloop.scheduler import Background

    ws = noisy()
    v0 = _version(ws)
    now = datetime(2026, 11, 21, 2, tzinfo=UTC)
    rows = service.weekly(ws, now=now)
    assert [(r.monitor, r.status, r.trigger) for r in rows] == [("noisy_sales", "open", "weekly")]
    assert _version(ws) == v0  # it waits for a person
    with ws.db.session() as s:
        waiting = service.open_suggestions(s)
    assert [w.monitor for w in waiting] == ["noisy_sales"] and waiting[0].created_at.tzinfo is not None
    assert any(c["knob"] == "sensitivity" for c in waiting[0].changes) or waiting[0].after != waiting[0].before
    assert service.weekly(ws, now=now + timedelta(days=3)) == []  # once a week
    apply_yaml(ws, th.DEFS + "    auto_tune: true\n")
    worker = Background(ws)
    rows = worker.tune_weekly(now=now + timedelta(days=8))
    assert [(r.status, r.applied_version) for r in rows] == [("applied", v0 + 2)]
    assert _version(ws) == v0 + 2 and ws.catalog().get("monitor", "noisy_sales").overrides
    assert worker.tune_weekly(now=now + timedelta(days=16)) == []  # looked for at most once an hour
