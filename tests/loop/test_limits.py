"""Bounded cost on every input: text lengths, matchers per silence, RE2 regexes, cron no finer than a minute.

Each limit is refused with a clear error that names the field and the maximum (API: 422), and changes nothing.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest
from fastapi.testclient import TestClient
from loop_helpers import MONITOR, Effect, apply_yaml, monitor_yaml, morning, timeline
from typer.testing import CliRunner

from metricloop.alerting import silences
from metricloop.alerting.matchers import parse_matcher
from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.errors import DefinitionError, InvalidInput
from metricloop.incidents import service
from metricloop.limits import MAX_MATCHERS, MAX_TEXT
from metricloop.monitors.service import run_monitor

TOO_LONG = "x" * (MAX_TEXT + 1)


@pytest.fixture
def api(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.6, {"store": "SH-1"})], extra=MONITOR)
    assert run_monitor(ws, "shop_sales", at=morning("2026-11-17")).status == "ok"
    with ws.db.session() as s:
        operator = create_token(s, name="ops", role="operator", user="zhang.wei@shop.test")
    client = TestClient(create_app(ws), headers={"Authorization": f"Bearer {operator}"})
    client.ws = ws
    (client.incident,) = [i["id"] for i in client.get("/api/incidents").json()]
    return client


def _problem(r) -> tuple[str, str]:
    """(where, error) of a refusal, whichever of the two error bodies it has."""
    body = r.json()
    if "problems" in body:
        (p,) = body["problems"]
        return p["where"], p["error"]
    return body["where"], body["error"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("comment", "text"),
        ("resolve", "root_cause"),
        ("resolve", "note"),
        ("reopen", "reason"),
        ("review", "note"),
    ],
)
def test_api_refuses_text_over_the_limit(api, path, field):
    before = len(timeline(api.ws, api.incident))
    body = {field: TOO_LONG}
    if path == "resolve" and field == "note":
        body["root_cause"] = "stock-out"
    r = api.post(f"/api/incidents/{api.incident}/{path}", json=body)
    assert r.status_code == 422, r.text
    where, error = _problem(r)
    assert where.endswith(field)
    assert f"{MAX_TEXT}" in error.replace(",", "")
    assert len(timeline(api.ws, api.incident)) == before
    # at the limit it is taken
    if path == "comment":
        ok = api.post(f"/api/incidents/{api.incident}/comment", json={"text": "y" * MAX_TEXT})
        assert ok.status_code == 200


def test_service_refuses_text_over_the_limit_for_every_caller(api):
    """The CLI and the message links call the service: the limit holds there too, naming the field."""
    with api.ws.db.session() as s:
        with pytest.raises(InvalidInput) as e:
            service.comment(s, incident_id=api.incident, actor="a", text=TOO_LONG)
        assert e.value.where == "text" and "at most 10,000" in e.value.message
        with pytest.raises(InvalidInput) as e:
            service.resolve(s, api.ws, api.ws.catalog(), incident_id=api.incident, actor="a", root_cause=TOO_LONG)
        assert e.value.where == "root_cause"
        with pytest.raises(InvalidInput) as e:
            silences.create(s, matchers=["store=SH-1"], reason=TOO_LONG, created_by="a", duration=None)
        assert e.value.where == "reason"


def test_cli_refuses_a_comment_over_the_limit(api, monkeypatch):
    from metricloop.cli import app

    monkeypatch.setenv("METRICLOOP_HOME", str(api.ws.home))
    if api.ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", api.ws.settings.db)
    before = len(timeline(api.ws, api.incident))
    result = CliRunner().invoke(app, ["incidents", "comment", str(api.incident), TOO_LONG])
    assert result.exit_code != 0
    assert "text is too long" in result.output and "at most 10,000" in result.output
    assert len(timeline(api.ws, api.incident)) == before


def test_silence_matchers_are_capped_in_count_and_length(api):
    many = [f"store=S{i}" for i in range(MAX_MATCHERS + 1)]
    r = api.post("/api/silences", json={"matchers": many, "reason": "x", "duration_minutes": 5})
    assert r.status_code == 422
    where, error = _problem(r)
    assert where.endswith("matchers") and str(MAX_MATCHERS) in error
    long_value = api.post(
        "/api/silences", json={"matchers": ["store=" + "x" * 2000], "reason": "x", "duration_minutes": 5}
    )
    assert long_value.status_code == 422
    assert "1000" in _problem(long_value)[1].replace(",", "")
    ok = api.post("/api/silences", json={"matchers": many[:MAX_MATCHERS], "reason": "x", "duration_minutes": 5})
    assert ok.status_code == 201
    with api.ws.db.session() as s, pytest.raises(InvalidInput) as e:
        silences.create(s, matchers=many * 200, reason="x", created_by="a", duration=None)
    assert e.value.where == "matchers" and "at most 50" in e.value.message


def test_a_pattern_re2_cannot_take_is_refused_with_the_reason(api):
    r = api.post("/api/silences", json={"matchers": [r"store=~(SH)-\1"], "reason": "x", "duration_minutes": 5})
    assert r.status_code == 422
    body = r.json()
    assert body["where"] == "matchers" and "RE2" in body["error"] and "invalid escape sequence" in body["error"]
    assert api.get("/api/silences").json() == []
    bad = api.post("/api/silences", json={"matchers": ["store=~(?=SH)"], "reason": "x", "duration_minutes": 5})
    assert bad.status_code == 422 and "look-arounds" in bad.json()["error"]


def test_a_route_pattern_re2_cannot_take_is_refused_at_apply(shop):
    ws = shop(extra=MONITOR)
    with pytest.raises(DefinitionError) as e:
        route = 'routes:\n  - {name: east, matchers: ["region=~(E)\\\\1"], assignee: a@shop.test}\n'
        apply_yaml(ws, route, file="r.yaml")
    text = "\n".join(str(p) for p in e.value.problems)
    assert "r.yaml:2 routes[0] (east).matchers" in text and "RE2" in text


def test_a_catastrophic_pattern_matches_in_linear_time():
    """(x+x+)+y against 40 x's takes Python's backtracking `re` minutes; RE2 answers at once."""
    code = (
        "from metricloop.alerting.matchers import parse_matcher\n"
        "m = parse_matcher('store=~(x+x+)+y')\n"
        "print(m.matches({'store': 'x' * 40}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_re2_matchers_keep_the_matcher_semantics():
    assert parse_matcher("store=~SH-.*").matches({"store": "SH-1"})
    assert not parse_matcher("store=~SH").matches({"store": "SH-1"})  # anchored: the whole value
    assert parse_matcher("store!~BJ-.*").matches({"store": "SH-1"})
    assert parse_matcher("region=~东|East").matches({"region": "东"})
    assert parse_matcher("store=~").matches({})  # a missing label is the empty string


@pytest.mark.parametrize("cron", ["*/5 * * * * *", "0 0 9 * * * 2026"])
def test_cron_with_a_seconds_field_is_refused_at_apply(shop, cron):
    ws = shop()
    with pytest.raises(DefinitionError) as e:
        apply_yaml(ws, monitor_yaml(schedule={"cron": cron}), file="m.yaml")
    (p,) = e.value.problems
    assert p.file == "m.yaml" and p.line is not None and p.field.endswith("schedule")
    assert "fields" in p.message and "once a minute" in p.message
