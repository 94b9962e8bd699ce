"""Root causes on the demo's incidents: computed as the replay opens them, stored as rows, on the timeline, in the
API (detail and /rca), in messages; ad hoc from the CLI; and an RCA failure never stops an incident opening."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from metricloop.app import create_app
from metricloop.demo.setup import install_demo
from metricloop.incidents.models import Incident, IncidentEvent
from metricloop.notify.models import Notification
from metricloop.rca.models import RcaFinding
from metricloop.settings import Settings
from metricloop.workspace import Workspace


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("rca_demo")
    ws = Workspace.init(home, Settings(home=home, db=f"sqlite:///{home / 'state.db'}", user="tester"))
    install_demo(ws, scale=0.1, seed=42, end="2026-11-20", replay_days=7)
    yield ws
    ws.close()


def _incident(s, monitor: str, slice_: str | None = None) -> Incident:
    rows = s.scalars(select(Incident).where(Incident.monitor == monitor).order_by(Incident.id)).all()
    # the replay's incidents, not the resolved past ones the demo seeds for the knowledge base (label history=demo)
    rows = [r for r in rows if (slice_ is None or slice_ in r.slices) and (r.labels or {}).get("history") != "demo"]
    assert rows, f"no incident of {monitor} {slice_}"
    return rows[0]


def _causes(s, inc: Incident) -> list[RcaFinding]:
    return s.scalars(select(RcaFinding).where(RcaFinding.incident_id == inc.id, RcaFinding.kind == "cause")
                     .order_by(RcaFinding.run, RcaFinding.rank)).all()


def test_the_stock_out_incident_names_the_store_and_the_stock_out_rate(demo):
    with demo.db.session() as s:
        inc = _incident(s, "store_sales", "store=SH-003")
        causes = _causes(s, inc)
        assert causes and causes[0].data["dimensions"].get("store") == "SH-003"
        related = s.scalars(select(RcaFinding).where(RcaFinding.incident_id == inc.id,
                                                     RcaFinding.kind == "related").order_by(RcaFinding.rank)).all()
        assert related[0].label == "stockout_rate" and related[0].data["abnormal"]
        assert related[0].data["actual"] > 5 * related[0].data["expected"]
        assert "缺货率" in inc.summary["rca_explanation_zh"] and "stock-out rate" in inc.summary["rca_explanation_en"]
        events = s.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == inc.id)).all()
        assert any(e.kind == "rca" and "store=SH-003" in e.message for e in events)
        # the first message already names the top causes
        bodies = [n.body for n in s.scalars(select(Notification).where(Notification.incident_id == inc.id))]
        assert bodies and any("store=SH-003" in b for b in bodies)


def test_the_carrier_delay_names_carrier_and_region(demo):
    with demo.db.session() as s:
        inc = _incident(s, "fulfilment")
        causes = _causes(s, inc)
        assert causes and causes[0].data["dimensions"] == {"region": "South", "carrier": "ZTO"}
        assert causes[0].data["effects"]["rate"] < 0  # the carrier got worse there: a rate effect


def test_api_shows_the_findings_in_the_detail_and_on_their_own(demo):
    client = TestClient(create_app(demo))
    token = (demo.home / ".api_token").read_text().strip()
    h = {"Authorization": f"Bearer {token}"}
    with demo.db.session() as s:
        inc_id = _incident(s, "store_sales", "store=SH-003").id
    detail = client.get(f"/api/incidents/{inc_id}", headers=h).json()
    assert detail["rca"]["causes"][0]["dimensions"]["store"] == "SH-003"
    rca = client.get(f"/api/incidents/{inc_id}/rca", headers=h)
    assert rca.status_code == 200 and rca.json()["related"][0]["metric"] == "stockout_rate"
    missing = client.get("/api/incidents/999999/rca", headers=h)
    assert missing.status_code == 404 and "error" in missing.json()
    assert client.get(f"/api/incidents/{inc_id}/rca").status_code == 401


def test_a_failing_analysis_still_opens_the_incident_and_says_why(demo, monkeypatch):
    from metricloop.rca import report

    def broken(*a, **k):
        raise RuntimeError("the cube fell over")

    monkeypatch.setattr(report, "leaf_cube", broken)
    from metricloop.rca.service import compute, record

    catalog = demo.catalog()
    outcome = compute(demo, catalog, catalog.all("monitor")["store_sales"], catalog.metric("gmv"),
                      slices=["store=SH-003"], at="2026-11-15", direction="down", grain="day")
    assert outcome.report is None and "the cube fell over" in outcome.error
    with demo.db.session() as s:
        inc = _incident(s, "store_sales", "store=SH-003")
        record(s, inc, outcome, now=inc.created_at, why="worse")
        s.flush()
        ev = s.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == inc.id,
                                                   IncidentEvent.kind == "rca_failed")).all()
        assert ev and "the cube fell over" in ev[-1].message
        s.rollback()


def test_ad_hoc_rca_from_the_cli(demo, monkeypatch):
    from typer.testing import CliRunner

    from metricloop.cli import app

    monkeypatch.chdir(demo.home)
    runner = CliRunner()
    out = runner.invoke(app, ["--workspace", str(demo.home), "rca", "--metric", "fulfilment_rate", "--at", "2026-11-17",
                              "--by", "region,carrier", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["causes"][0]["dimensions"] == {"region": "South", "carrier": "ZTO"}
    quiet = runner.invoke(app, ["--workspace", str(demo.home), "rca", "--metric", "gmv", "--at", "2026-11-05"])
    assert quiet.exit_code == 0 and "no significant deviation" in quiet.output
    bad = runner.invoke(app, ["--workspace", str(demo.home), "rca", "--metric", "gmv", "--at", "2026-11-05",
                              "--by", "colour"])
    assert bad.exit_code != 0 and "colour" in bad.output


def test_the_console_incident_page_shows_causes_and_related_metrics(demo):
    import re
    from html import unescape

    client = TestClient(create_app(demo), base_url="http://127.0.0.1")
    page = client.get("/login")
    csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))
    r = client.post("/login", data={"name": "viewer", "password": "viewer-demo", "csrf": csrf, "next": "/console"},
                    follow_redirects=False)
    assert r.status_code == 303
    with demo.db.session() as s:
        inc_id = _incident(s, "store_sales", "store=SH-003").id
    for lang, word in (("zh", "根因分析"), ("en", "Root cause")):
        html = client.get(f"/console/incidents/{inc_id}?lang={lang}").text
        panel = html[html.index('id="rca"'):]
        assert word in panel and "store=SH-003" in panel and 'id="rca-related"' in panel
    assert "缺货率" in client.get(f"/console/incidents/{inc_id}?lang=zh").text


def test_the_page_a_message_link_opens_names_the_causes_too(demo):
    """The read-only page behind a message's link (no login) shows the analysis the incident opened with."""
    from metricloop.notify.signing import secret_key_for, sign_action

    with demo.db.session() as s:
        inc_id = _incident(s, "store_sales", "store=SH-003").id
    view = sign_action(inc_id, "view", key=secret_key_for(demo))
    client = TestClient(create_app(demo))
    for lang, word in (("zh", "根因分析"), ("en", "Root causes")):
        html = client.get(f"/incidents/{inc_id}", params={"token": view, "lang": lang}).text
        panel = html[html.index('id="rca"'):]
        assert word in panel and "store=SH-003" in panel
    assert "缺货率" in client.get(f"/incidents/{inc_id}", params={"token": view, "lang": "zh"}).text
