"""The console monitor screen's tuning panel over HTTP (the real app, in process): the suggestion with before and
after, an operator computes one, an admin applies it (a new monitor version in `metricloop history`), a viewer sees
no buttons and is refused, and a suggestion the monitor's edit made stale is refused on the screen with the diff."""

from __future__ import annotations

from datetime import datetime
from html import unescape

import pytest
import tuning_helpers as th
from console_helpers import PASSWORD
from loop_helpers import apply_yaml
from sqlalchemy import select
from test_console_web import client_of, csrf_of, logged_in
from typer.testing import CliRunner

from metricloop.auth import users
from metricloop.cli import app as cli_app
from metricloop.db.models import Definition
from metricloop.tuning import service
from metricloop.tuning.models import TuningSuggestion
from metricloop.web.console import routes

AT = datetime(2026, 11, 21, 9)  # metric-local: the morning after the data ends
PAGE = "/console/monitors/noisy_sales"


@pytest.fixture
def noisy(tmp_path, state_url, open_ws):
    """The noisy shop of the tuning tests with the team's labels, and a viewer, an operator and an admin."""
    home = tmp_path / "noisy"
    th.write_data(home)
    ws = open_ws(home, state_url)
    apply_yaml(ws, th.DEFS)
    with ws.db.session() as s:
        th.true_labels(s)
        for name, role, domains in (("vic", "viewer", ["sales"]), ("ana", "operator", ["sales"]),
                                    ("boss", "admin", [])):
            users.add_user(s, name=name, password=PASSWORD, role=role, domains=domains, email=f"{name}@shop.test")
    routes.limiter.__init__()
    return ws


def _version(ws) -> int:
    with ws.db.session() as s:
        q = select(Definition.version).where(Definition.kind == "monitor", Definition.name == "noisy_sales")
        return s.scalar(q)


def _post(c, action: str, **data):
    page = c.get(PAGE)
    return c.post(f"{PAGE}/tuning/{action}", data={"csrf": csrf_of(page.text), **data}, follow_redirects=False)


def test_the_panel_shows_a_suggestion_an_operator_computes_and_a_viewer_is_refused(noisy):
    ws = noisy
    viewer = logged_in(ws, "vic")
    page = viewer.get(PAGE)
    assert page.status_code == 200 and 'id="tuning"' in page.text and 'id="no-suggestion"' in page.text
    assert "tune-compute" not in page.text and "tune-apply" not in page.text
    assert _post(viewer, "compute").status_code == 403  # the server refuses, not only the page
    assert viewer.post(f"{PAGE}/tuning/compute", data={}).status_code == 403  # no CSRF token
    ana = logged_in(ws, "ana")
    r = _post(ana, "compute", budget="many")
    assert r.status_code == 400 and "many" in unescape(r.text) and "budget" in r.text  # said on the screen
    r = _post(ana, "compute", budget="2")
    assert r.status_code == 303 and r.headers["location"].endswith("done=tune_compute#tuning"), r.text
    with ws.db.session() as s:
        row = s.scalar(select(TuningSuggestion).where(TuningSuggestion.status == "open"))
        assert row.created_by == "ana"
    page = ana.get(PAGE + "?lang=en")
    text = unescape(page.text)
    assert f"#{row.id} · waiting for approval" in text
    assert "<td>False alarms removed</td><td>0 / 9</td><td><b>9 / 9</b></td>" in text
    assert "<td>Confirmed alerts kept</td>" in text and "<td>Missed ranges caught</td>" in text
    assert 'id="knob-changes"' in text or 'id="overrides"' in text
    assert "<code>store=N1</code>" in text  # the noisy store's knobs of its own
    assert 'id="alerts-disappear"' in text and "false alarm" in text
    assert "tune-reject" in text and "tune-compute" in text
    assert "tune-apply" not in text and "needs the admin role" in text  # an operator cannot apply
    assert _post(ana, "apply", suggestion=str(row.id)).status_code == 403
    for bad in ("x", "0", str(2**40)):
        r = _post(ana, "reject", suggestion=bad)
        assert r.status_code == 400 and f"bad suggestion '{bad}'" in unescape(r.text)
    zh = unescape(ana.get(PAGE + "?lang=zh").text)
    assert "调优建议" in zh and "<td>去掉的误报</td>" in zh and "待审批" in zh
    # a viewer sees the suggestion, without buttons
    text = unescape(viewer.get(PAGE + "?lang=en").text)
    assert "<td>False alarms removed</td>" in text and "tune-reject" not in text and "tune-compute" not in text
    assert _post(viewer, "reject", suggestion=str(row.id)).status_code == 403
    # the operator rejects it
    r = _post(ana, "reject", suggestion=str(row.id), note="after the holidays")
    assert r.status_code == 303
    text = unescape(ana.get(PAGE + "?lang=en").text)
    assert "· rejected" in text and "after the holidays" in text and "tune-reject" not in text
    assert _post(ana, "reject", suggestion=str(row.id)).status_code == 409  # no longer open: said, not a 500


def test_an_admin_applies_a_new_version_and_a_stale_suggestion_is_refused_with_the_diff(noisy, monkeypatch):
    ws = noisy
    stale, _ = service.suggest(ws, "noisy_sales", at=AT, actor="ana")
    apply_yaml(ws, th.DEFS.replace("sensitivity: 9", "sensitivity: 8"), author="carol")
    v1 = _version(ws)
    boss = logged_in(ws, "boss")
    text = unescape(boss.get(PAGE + "?lang=en").text)
    assert 'id="suggestion-stale"' in text and "by carol" in text
    assert "-  sensitivity: 9" in text and "+  sensitivity: 8" in text
    assert "tune-apply" not in text  # nothing to press
    r = _post(boss, "apply", suggestion=str(stale.id))  # pressed from a page loaded before the edit
    assert r.status_code == 409 and "changed since suggestion" in unescape(r.text)
    assert "+  sensitivity: 8" in unescape(r.text) and _version(ws) == v1  # nothing written
    fresh, _ = service.suggest(ws, "noisy_sales", at=AT, actor="ana")
    text = unescape(boss.get(PAGE).text)
    assert "suggestion-stale" not in text and "tune-apply" in text
    r = _post(boss, "apply", suggestion=str(fresh.id))
    assert r.status_code == 303 and r.headers["location"].endswith("done=tune_apply#tuning"), r.text
    assert _version(ws) == v1 + 1
    assert [o.slice for o in ws.catalog().get("monitor", "noisy_sales").overrides] == ["store=N1"]
    text = unescape(boss.get(PAGE + "?lang=en").text)
    assert f"#{fresh.id} · applied" in text and f"became version {v1 + 1}" in text and "decided by boss" in text
    monkeypatch.setenv("METRICLOOP_HOME", str(ws.home))
    if ws.settings.db:
        monkeypatch.setenv("METRICLOOP_DB", ws.settings.db)
    result = CliRunner().invoke(cli_app, ["history", "monitor", "noisy_sales"])
    assert result.exit_code == 0, result.output
    assert f"tuning suggestion #{fresh.id}" in result.output and "boss" in result.output
    r = client_of(ws).post(f"{PAGE}/tuning/apply", follow_redirects=False)  # nobody logged in
    assert r.status_code == 401 and _version(ws) == v1 + 1
