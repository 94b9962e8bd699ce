"""The demo's channels deliver to the inbox of the server that runs them, on whatever port it serves
(`serve --port`, METRICLOOP_PORT, METRICLOOP_BASE_URL), not to a hard-coded 127.0.0.1:8000."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
from loop_helpers import incidents, morning, outbox

from loopback import free_port
from metricloop.auth.service import create_token
from metricloop.monitors.service import run_monitor
from metricloop.settings import Settings
from metricloop.sources.secrets import expand


def test_a_demo_served_on_another_port_delivers_to_its_own_inbox(demo):
    ws = demo()
    assert run_monitor(ws, "store_sales", at=morning("2026-11-17"), now=morning("2026-11-17")).status == "ok"
    (inc,) = [i for i in incidents(ws) if i.monitor == "store_sales"]
    assert {r.channel for r in outbox(ws)} >= {"ops_webhook", "ops_im"}
    with ws.db.session() as s:
        token = create_token(s, name="reader", role="viewer")
    ws.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICLOOP_")}
    env["METRICLOOP_HOME"] = str(ws.home)
    server = subprocess.Popen(
        [sys.executable, "-m", "metricloop", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        boxes: dict[str, list] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ({"ops", "im"} <= set(boxes)):
            assert server.poll() is None, server.stderr.read().decode()
            try:
                got = httpx.get(f"{base}/api/inbox", headers={"Authorization": f"Bearer {token}"}, timeout=5)
                for m in got.json() if got.status_code == 200 else []:
                    boxes.setdefault(m["box"], []).append(m)
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert {"ops", "im"} <= set(boxes), boxes
        assert any(m["payload"].get("incident", {}).get("id") == inc.id for m in boxes["ops"]), boxes["ops"][0]
    finally:
        server.terminate()
        server.wait(20)


def test_the_server_address_follows_the_port_and_the_base_url(monkeypatch):
    for var in ("METRICLOOP_BASE_URL", "METRICLOOP_HOST", "METRICLOOP_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert Settings().base_url == "http://127.0.0.1:8000"
    assert Settings(port=9123).base_url == "http://127.0.0.1:9123"
    assert Settings(host="0.0.0.0", port=9123).base_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("METRICLOOP_PORT", "9124")
    assert Settings().base_url == "http://127.0.0.1:9124"
    ops = expand("http://${METRICLOOP_ADDRESS}/api/inbox/ops", where="x")
    assert ops == ("http://127.0.0.1:9124/api/inbox/ops", [])  # not a secret: never masked
    monkeypatch.setenv("METRICLOOP_BASE_URL", "https://metricloop.example.com/ml/")
    assert expand("json://${METRICLOOP_ADDRESS}/api/inbox/im", where="x")[0] == (
        "json://metricloop.example.com/ml/api/inbox/im"
    )
