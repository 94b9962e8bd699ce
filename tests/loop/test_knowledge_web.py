"""The knowledge base in the console and on the signed resolve link (the real app, in process): the resolve forms
take a category and the actions that worked, the incident screen shows similar past incidents, and the knowledge
screen searches the person's domains."""

from __future__ import annotations

from html import unescape

import pytest
from console_helpers import FULFILMENT, HOOK
from loop_helpers import incidents, morning
from test_console_web import PASSWORD, client_of, csrf_of, logged_in
from test_knowledge import MONITOR, PAST, REPEAT

from metricloop.auth import users
from metricloop.monitors.service import run_monitor
from metricloop.web.console import routes


@pytest.fixture
def past(shop):
    """A shop whose SH-1 dropped on 11-02 (its incident opened 11-03) and drops again on 11-16."""
    ws = shop(effects=[PAST, REPEAT], extra=FULFILMENT + MONITOR + HOOK)
    at = morning("2026-11-03")
    assert run_monitor(ws, "shop_sales", at=at, now=at).status == "ok"
    with ws.db.session() as s:
        for name, role, domains in (("ana", "operator", ["sales"]), ("lou", "operator", ["fulfilment"])):
            users.add_user(s, name=name, password=PASSWORD, role=role, domains=domains, email=f"{name}@shop.test")
    routes.limiter.__init__()
    (inc,) = incidents(ws)
    return ws, inc


def entry_of(ws, incident_id):
    from metricloop.knowledge.service import entry_for_incident

    with ws.db.session() as s:
        e = entry_for_incident(s, incident_id)
        s.expunge_all()
        return e


def repeat(ws):
    at = morning("2026-11-17")
    assert run_monitor(ws, "shop_sales", at=at, now=at).status == "ok"
    return next(i for i in incidents(ws) if i.state == "triggered")


def test_console_resolve_takes_a_category_and_the_repeat_shows_it(past):
    ws, inc = past
    c = logged_in(ws, "ana")
    page = c.get(f"/incidents/{inc.id}?lang=zh")
    assert 'name="category"' in page.text and '<option value="stock_out">断货</option>' in page.text
    assert 'id="similar"' in page.text  # the panel is there, empty for now
    token = csrf_of(page.text)
    bad = c.post(f"/console/incidents/{inc.id}/resolve",
                 data={"csrf": token, "root_cause": "x", "category": "gremlins"})
    assert bad.status_code == 400 and "gremlins" in unescape(bad.text)
    assert entry_of(ws, inc.id) is None and incidents(ws)[0].state == "triggered"
    r = c.post(f"/console/incidents/{inc.id}/resolve",
               data={"csrf": token, "root_cause": "SH-1 生鲜断货", "category": "stock_out",
                     "actions": "从华东仓调拨补货。再联系供应商"})
    assert r.status_code == 200
    e = entry_of(ws, inc.id)
    assert (e.category, e.category_source, e.actions, e.resolved_by) == (
        "stock_out", "given", "从华东仓调拨补货。再联系供应商", "ana")
    new = repeat(ws)
    screen = unescape(c.get(f"/incidents/{new.id}?lang=zh").text)
    assert "类似的历史工单" in screen and f'href="/incidents/{inc.id}"' in screen
    assert "上次类似：2026-11-03 SH-1 断货，从华东仓调拨补货后 " in screen and "同一切片 store=SH-1" in screen
    english = unescape(c.get(f"/incidents/{new.id}?lang=en").text)
    assert "Last similar: 2026-11-03 SH-1 stock-out, 从华东仓调拨补货, recovered in " in english
    # outside the person's domains the incident (and its panel) is not there
    assert logged_in(ws, "lou").get(f"/incidents/{new.id}").status_code == 404


def test_the_knowledge_screen_searches_the_persons_domains(past):
    ws, inc = past
    c = logged_in(ws, "ana")
    empty = c.get("/console/knowledge")
    assert empty.status_code == 200 and 'id="knowledge-none"' in empty.text
    token = csrf_of(c.get(f"/incidents/{inc.id}").text)
    c.post(f"/console/incidents/{inc.id}/resolve",
           data={"csrf": token, "root_cause": "Fresh out of stock at SH-1", "actions": "restocked"})
    for q in ("断货", "stock", "restock"):
        found = c.get("/console/knowledge", params={"q": q})
        assert found.status_code == 200 and 'id="knowledge-rows"' in found.text, q
        assert f'href="/incidents/{inc.id}"' in found.text
    assert 'id="knowledge-none"' in c.get("/console/knowledge", params={"q": "台风"}).text
    bad = c.get("/console/knowledge", params={"q": "!!!"})
    assert bad.status_code == 400 and "has no letters" in unescape(bad.text)
    assert c.get("/console/knowledge", params={"category": "gremlins"}).status_code == 400
    assert 'id="knowledge-rows"' in c.get("/console/knowledge", params={"category": "stock_out"}).text
    lou = logged_in(ws, "lou")  # fulfilment only: the sales entry is not theirs to see
    assert 'id="knowledge-none"' in lou.get("/console/knowledge", params={"q": "断货"}).text
    assert client_of(ws).get("/console/knowledge", follow_redirects=False).status_code == 303  # log in first


def test_the_signed_resolve_link_takes_a_category_and_actions(past):
    from metricloop.notify.signing import secret_key_for, sign_action

    ws, inc = past
    token = sign_action(inc.id, "resolve", key=secret_key_for(ws), recipient="mgr.sh1@shop.test", via="email")
    anonymous = client_of(ws)
    form = anonymous.get(f"/api/incidents/{inc.id}/resolve", params={"token": token})
    assert form.status_code == 200 and 'name="category"' in form.text and 'name="actions"' in form.text
    bad = anonymous.post(f"/api/incidents/{inc.id}/resolve?token={token}",
                         data={"root_cause": "x", "category": "gremlins"})
    assert bad.status_code == 400 and "gremlins" in unescape(bad.text)
    assert incidents(ws)[0].state == "triggered" and entry_of(ws, inc.id) is None  # nothing changed, not spent
    done = anonymous.post(f"/api/incidents/{inc.id}/resolve?token={token}",
                          data={"root_cause": "SH-1 缺货", "category": "stock_out", "actions": "补货"})
    assert done.status_code == 200 and incidents(ws)[0].state == "resolved"
    e = entry_of(ws, inc.id)
    assert (e.category, e.actions, e.cause) == ("stock_out", "补货", "SH-1 缺货")
    assert e.resolved_by == "mgr.sh1@shop.test via e-mail link"  # who, and how, as on the timeline


def test_the_message_links_incident_page_offers_the_fields_and_the_last_similar_lines(past):
    from metricloop.notify.signing import secret_key_for, sign_action

    ws, inc = past
    c = logged_in(ws, "ana")
    c.post(f"/console/incidents/{inc.id}/resolve", data={"csrf": csrf_of(c.get(f"/incidents/{inc.id}").text),
                                                         "root_cause": "SH-1 生鲜断货", "actions": "补货"})
    new = repeat(ws)
    view = sign_action(new.id, "view", key=secret_key_for(ws), recipient="mgr.sh1@shop.test", via="email")
    page = unescape(client_of(ws).get(f"/incidents/{new.id}", params={"token": view},
                                      headers={"Accept-Language": "zh-CN"}).text)
    assert 'name="category"' in page and 'name="actions"' in page  # its resolve form takes them too
    assert 'id="similar"' in page and "上次类似：2026-11-03 SH-1 断货，补货后 " in page
    assert f'href="/incidents/{inc.id}"' not in page  # lines only: the link opens its one incident, no other
