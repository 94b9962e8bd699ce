"""A shop for the console tests: the loop tests' shop (sales, domain `sales`) plus a metric of another domain
(`deliveries`, domain `fulfilment`), and an incident on sales opened by a real monitor run."""

from __future__ import annotations

from datetime import date

from loop_helpers import Effect, incidents, monitor_yaml, morning

from metricloop.monitors.service import run_monitor

FULFILMENT = """
  - name: deliveries
    title: {zh: 配送单量, en: Deliveries}
    owner: logistics.owner@shop.test
    domain: fulfilment
    tier: important
    aliases: [shipments, 发货量]
    source: shop
    table: sales
    time_column: ts
    grain: day
    measure: {agg: count}
    dimensions: [region, channel]
"""

ROTATION = """
rotations:
  - name: store_oncall
    members: [zhang.wei@shop.test, li.na@shop.test]
    period: daily
    start: 2026-01-05T09:00:00
"""

HOOK = """
channels:
  - {name: hook, type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  - {name: all, matchers: ["monitor=shop_sales"], team: store operations, channels: [hook]}
"""


def console_extra() -> str:
    """YAML to add to SHOP_DEFS: the fulfilment metric (inside `metrics:`), the monitor, a rotation, a route. The
    routes come last, so that route items a test appends (`  - {name: …}`) continue their list."""
    return FULFILMENT + monitor_yaml(slicing={"dimensions": ["store"], "total": False}) + ROTATION + HOOK


def open_sales_incident(shop_factory=None, ws=None):
    """A P1 sales incident (SH-1 sells half as much on 2026-11-16), opened by the monitor's run the next morning."""
    if ws is None:
        ws = shop_factory(effects=[Effect(date(2026, 11, 16), date(2026, 11, 16), 0.5, {"store": "SH-1"})],
                          extra=console_extra())  # fmt: skip
    assert run_monitor(ws, "shop_sales", at=morning("2026-11-17"), now=morning("2026-11-17")).status == "ok"
    (inc,) = incidents(ws)
    return ws, inc


PASSWORD = "correct horse battery"
PEOPLE = (
    ("ana", "operator", ["sales"]),
    ("vic", "viewer", ["sales"]),
    ("lou", "operator", ["fulfilment"]),
    ("王芳", "admin", []),
)


def console_world(shop_factory):
    """The sales incident and a user per role and domain (PEOPLE, all with PASSWORD), the login limiter reset."""
    from metricloop.auth import users
    from metricloop.web.console import routes

    ws, inc = open_sales_incident(shop_factory)
    with ws.db.session() as s:
        for name, role, domains in PEOPLE:
            users.add_user(s, name=name, password=PASSWORD, role=role, domains=domains, email=f"{name}@shop.test")
    routes.limiter.__init__()  # a fresh per-address counter for each test
    return ws, inc
