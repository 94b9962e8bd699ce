"""Bad input gets a clear error that says what and where, and changes nothing (SQLite and PostgreSQL state)."""

from __future__ import annotations

from datetime import date

import pytest
from loop_helpers import MONITOR, Effect, apply_yaml, incidents, morning, outbox, runs, timeline
from sqlalchemy import func, select

from metricloop.db.models import Definition, DefinitionVersion
from metricloop.errors import DefinitionError, MetricloopError, NotFound
from metricloop.incidents import service
from metricloop.monitors.service import run_due, run_monitor


def state(ws) -> tuple:
    """Everything a bad input could have touched."""
    from metricloop.alerting.models import Alert
    from metricloop.incidents.models import Incident, IncidentEvent
    from metricloop.notify.models import Notification

    with ws.db.session() as s:
        defs = sorted((d.kind, d.name, d.version, repr(d.spec)) for d in s.scalars(select(Definition)))
        counts = tuple(
            s.scalar(select(func.count()).select_from(m))
            for m in (DefinitionVersion, Alert, Incident, IncidentEvent, Notification)
        )
        incs = sorted(
            (i.id, i.state, i.assignee, i.root_cause, str(i.resolved_at)) for i in s.scalars(select(Incident))
        )
    return defs, counts, incs


def refused(ws, text: str) -> DefinitionError:
    before = state(ws)
    with pytest.raises(DefinitionError) as e:
        apply_yaml(ws, text, file="bad.yaml")
    assert state(ws) == before
    assert str(e.value).startswith(f"{len(e.value.problems)} problem")
    assert "nothing was changed" in str(e.value)
    return e.value


def problem(err: DefinitionError) -> str:
    return "\n".join(str(p) for p in err.problems)


MONITOR_BODY = """
monitors:
  - name: shop_sales
    metric: {metric}
    slicing: {{dimensions: [{dims}]}}
    detector: {detector}
    schedule: {{cron: "0 9 * * *"}}
"""


def bad_monitor(metric="sales", dims="region, store", detector="{detector: auto}") -> str:
    return MONITOR_BODY.format(metric=metric, dims=dims, detector=detector)


def test_a_monitor_naming_an_unknown_metric(shop):
    ws = shop(extra=MONITOR)
    err = refused(ws, bad_monitor(metric="salez"))
    assert problem(err) == "bad.yaml:4 monitors[0] (shop_sales).metric: unknown metric 'salez'"


def test_a_monitor_naming_an_unknown_dimension(shop):
    ws = shop(extra=MONITOR)
    err = refused(ws, bad_monitor(dims="region, city"))
    assert problem(err) == (
        "bad.yaml:5 monitors[0] (shop_sales).slicing.dimensions[1]: "
        "metric 'sales' has no dimension 'city' (allowed: region, store, channel)"
    )


def test_a_monitor_with_an_unknown_detector_or_knob(shop):
    ws = shop(extra=MONITOR)
    assert "unknown detector 'magic'" in problem(refused(ws, bad_monitor(detector="{detector: magic}")))
    err = refused(ws, bad_monitor(detector="{detector: auto, sensitivity: 11}"))
    assert "detector" in problem(err) and "10" in problem(err)


def test_a_route_with_an_invalid_matcher(shop):
    ws = shop(extra=MONITOR)
    err = refused(ws, 'routes:\n  - {name: east, matchers: ["region=~(East"], assignee: a@shop.test}\n')
    assert "routes[0] (east).matchers" in problem(err)
    assert "'region=~(East': invalid regular expression" in problem(err)
    err = refused(ws, 'routes:\n  - {name: east, matchers: ["region is East"], assignee: a@shop.test}\n')
    assert "'region is East' is not a matcher" in problem(err)


def test_a_route_naming_what_does_not_exist(shop):
    ws = shop(extra=MONITOR)
    err = refused(
        ws,
        "routes:\n  - {name: east, matchers: [], channels: [nope], escalation: none_such, rotation: nobody,"
        " assignee_lookup: {source: crm, table: t, key: k, column: c}}\n",
    )
    text = problem(err)
    for message in ("unknown channel 'nope'", "unknown escalation policy 'none_such'", "unknown rotation 'nobody'",
                    "unknown source 'crm'"):  # fmt: skip
        assert message in text


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("{name: hook, type: webhook, url: 'ftp://example.com/x'}", "is not an http(s) URL with a host"),
        ("{name: hook, type: webhook, url: 'http://'}", "is not an http(s) URL with a host"),
        ("{name: hook, type: webhook, url: 'https://hooks.example.com/x', secret: plain-text}", "${ENV_VAR}"),
        ("{name: chat, type: apprise, url: 'nosuchapp://token'}", "is not a URL apprise understands"),
        ("{name: mail, type: email, port: 70000}", "port"),
        ("{name: mail, type: email, password: hunter2}", "${ENV_VAR}"),
        ("{name: pager, type: pager, url: 'https://x'}", "type"),
    ],
)
def test_a_channel_that_is_wrong(shop, channel, message):
    ws = shop(extra=MONITOR)
    err = refused(ws, f"channels:\n  - {channel}\n")
    assert "bad.yaml:2 channels[0]" in problem(err) and message in problem(err)


def test_a_secret_in_clear_text_is_refused_without_repeating_it(shop):
    ws = shop(extra=MONITOR)
    err = refused(
        ws,
        "channels:\n  - {name: hook, type: webhook, url: 'https://hooks.example.com/x', secret: s3cr3t-value}\n"
        "  - {name: mail, type: email, password: hunter2}\n",
    )
    text = problem(err)
    assert "channels[0] (hook).secret: write it as ${ENV_VAR}" in text
    assert "channels[1] (mail).password: write it as ${ENV_VAR}" in text
    assert "s3cr3t-value" not in text + str(err) and "hunter2" not in text + str(err)


def test_an_action_secret_in_clear_text_is_refused_without_repeating_it(shop):
    """An action's HMAC key is stored with the monitor, versioned and exported like a channel's: a reference only."""
    ws = shop(extra=MONITOR)
    action = "    actions:\n      - {name: restock, url: 'https://buy.example.com/restock', secret: s3cr3t-value}\n"
    err = refused(ws, MONITOR + action)
    assert problem(err) == (
        "bad.yaml:11 monitors[0] (shop_sales).actions[0].secret: "
        "write it as ${ENV_VAR} so the secret is never stored (it is read when it is used)"
    )
    assert "s3cr3t-value" not in str(err)
    apply_yaml(ws, MONITOR + action.replace("s3cr3t-value", "'${RESTOCK_SECRET}'"))  # the reference is fine
    assert ws.catalog().all("monitor")["shop_sales"].actions[0].secret == "${RESTOCK_SECRET}"


def test_an_escalation_that_is_wrong(shop):
    ws = shop(extra=MONITOR)
    err = refused(ws, "escalations:\n  - {name: e, levels: [{after: 1h, notify: [a]}, {after: 10m, notify: [b]}]}\n")
    assert "levels must be in order" in problem(err)
    err = refused(ws, "escalations:\n  - {name: e, levels: [{after: soon, notify: [a]}]}\n")
    assert "levels[0].after" in problem(err)
    err = refused(ws, "escalations:\n  - {name: e, levels: [{after: 0m, notify: ['oncall:ghosts']}]}\n")
    assert "unknown rotation in 'oncall:ghosts'" in problem(err)


def open_and_resolve(shop):
    ws = shop(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})], extra=MONITOR)
    run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    (inc,) = incidents(ws)
    with ws.db.session() as s:
        service.resolve(s, ws, ws.catalog(), incident_id=inc.id, actor="a@shop.test", root_cause="stock-out")
    return ws, inc


def test_acknowledging_a_resolved_incident_is_refused(shop):
    ws, inc = open_and_resolve(shop)
    before, events = state(ws), len(timeline(ws, inc.id))
    with pytest.raises(MetricloopError) as e, ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=inc.id, actor="b@shop.test")
    assert e.value.status_code == 409
    assert str(e.value) == f"incident #{inc.id} is resolved: only a triggered incident can be acknowledged"
    assert state(ws) == before and len(timeline(ws, inc.id)) == events


def test_resolving_twice_is_refused(shop):
    ws, inc = open_and_resolve(shop)
    before = state(ws)
    with pytest.raises(MetricloopError) as e, ws.db.session() as s:
        service.resolve(s, ws, ws.catalog(), incident_id=inc.id, actor="b@shop.test", root_cause="something else")
    assert e.value.status_code == 409 and f"incident #{inc.id} is already resolved" in str(e.value)
    assert state(ws) == before
    assert incidents(ws)[0].root_cause == "stock-out"
    assert [n.event for n in outbox(ws)] == []  # no channels, and nothing queued by the refused call


def test_other_refused_flows(shop):
    ws, inc = open_and_resolve(shop)
    with ws.db.session() as s:
        service.reopen(s, ws, ws.catalog(), incident_id=inc.id, actor="a", reason="sales fell again")
    with pytest.raises(MetricloopError, match="only a resolved incident can be reopened"), ws.db.session() as s:
        service.reopen(s, ws, ws.catalog(), incident_id=inc.id, actor="a")
    with pytest.raises(MetricloopError, match="only a resolved incident can be reviewed"), ws.db.session() as s:
        service.review(s, incident_id=inc.id, actor="a")
    with pytest.raises(NotFound, match="no incident #404"), ws.db.session() as s:
        service.acknowledge(s, ws, ws.catalog(), incident_id=404, actor="a")
    with pytest.raises(MetricloopError, match="a comment needs text"), ws.db.session() as s:
        service.comment(s, incident_id=inc.id, actor="a", text="  ")
    with pytest.raises(NotFound, match="no monitor named 'nope'"):
        run_due(ws, only="nope")


def test_a_missing_calendar_file_fails_the_run_with_where(shop):
    ws = shop(extra=MONITOR)
    apply_yaml(ws, MONITOR.replace("calendar: {china_holidays: false}", "calendar: {events: [data/nope.csv]}"))
    r = run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    assert r.status == "failed"
    assert r.error.startswith("monitor shop_sales.calendar: calendar events file") and "nope.csv" in r.error
    assert "Traceback" not in r.error
    assert len(runs(ws)) == 1 and incidents(ws) == []
