"""No server error on any input, one error shape, real statuses in the OpenAPI document, a body-size limit and a rate
limit on the routes that need no token. In-process over a real workspace (SQLite and PostgreSQL state)."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from loop_helpers import MONITOR

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.incidents.models import Incident
from metricloop.notify.signing import secret_key_for, sign_action

HUGE = [2**63, 2**64, 2**31, 10**30]  # past SQLite's 64-bit and PostgreSQL's 32-bit INTEGER


def client_for(ws, **settings) -> TestClient:
    for name, value in settings.items():
        setattr(ws.settings, name, value)
    with ws.db.session() as s:
        s.add(Incident(id=1, title="门店 SH-1 销售额下降", severity="P1", monitor="shop_sales", metric="sales",
                       group_key="g"))  # fmt: skip
        operator = create_token(s, name="ops", role="operator", user="zhang.wei@shop.test")
        viewer = create_token(s, name="boss", role="viewer")
    c = TestClient(create_app(ws), headers={"Authorization": f"Bearer {operator}"})
    c.ws = ws
    c.viewer = {"Authorization": f"Bearer {viewer}"}
    return c


@pytest.fixture
def api(shop):
    return client_for(shop(extra=MONITOR))


def spec_operations(client) -> list[tuple[str, str, dict]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(m.upper(), p, op) for p, ops in paths.items() for m, op in ops.items()]


def is_error(r, status: int, where: str | None = "any") -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
    body = r.json()
    assert set(body) >= {"error", "where"} and isinstance(body["error"], str) and body["error"], body
    if where != "any":
        assert body["where"] == where, body
    return body


def test_ids_out_of_range_on_every_route_are_422_naming_the_parameter(api):
    id_routes = [(m, p) for m, p, _ in spec_operations(api) if re.search(r"\{\w+_id\}", p)]
    assert len(id_routes) >= 14
    for method, path in id_routes:
        name = re.search(r"\{(\w+_id)\}", path).group(1)
        for value in HUGE + [0, -1]:
            r = api.request(method, path.replace("{" + name + "}", str(value)), json={} if method == "POST" else None)
            body = is_error(r, 422, f"path.{name}")
            assert body["error"].startswith(f"invalid request: path.{name}: Input should be"), body
    assert api.get(f"/api/incidents/{2**31 - 1}").status_code == 404  # the largest id is looked up


def test_paging_and_id_filters_out_of_range_are_422(api):
    for path, param in (
        ("/api/incidents", "limit"),
        ("/api/incidents", "offset"),
        ("/api/outbox", "limit"),
        ("/api/outbox", "offset"),
        ("/api/outbox", "incident"),
        ("/api/runs", "limit"),
        ("/api/alerts", "limit"),
        ("/api/inbox", "limit"),
    ):
        for value in HUGE:
            is_error(api.get(path, params={param: value}), 422, f"query.{param}")
    is_error(api.get("/api/alerts", params={"limit": -1}), 422, "query.limit")
    assert api.get("/api/incidents", params={"limit": 1000, "offset": 2**31 - 1}).json() == []


def test_numbers_and_times_out_of_range_in_a_body_are_422(api):
    for body, where in (
        ('{"duration_minutes": 1e300}', "body.duration_minutes"),
        ('{"duration_minutes": Infinity}', "body.duration_minutes"),  # Python's JSON reader takes these
        ('{"duration_minutes": -Infinity}', "body.duration_minutes"),
        ('{"duration_minutes": NaN}', "body.duration_minutes"),
        ('{"duration_minutes": 1e20}', "body.duration_minutes"),
        ('{"ends_at": "9999-12-31T23:59:59-10:00"}', "body.ends_at"),  # past year 9999 once in UTC
        ('{"ends_at": "0001-01-01T00:00:00+01:00"}', "body.ends_at"),
        ('{"ends_at": "2300-01-01T00:00:00"}', "body.ends_at"),
    ):
        text = body[:-1] + ', "matchers": ["store=SH-1"], "reason": "maintenance"}'
        r = api.post("/api/silences", content=text, headers={"Content-Type": "application/json"})
        is_error(r, 422, where)
    assert api.get("/api/silences").json() == []  # nothing was written
    ok = api.post("/api/silences", json={"matchers": ["store=SH-1"], "reason": "works", "duration_minutes": 90})
    assert ok.status_code == 201


def test_a_monitor_run_at_a_time_out_of_range_is_422(api):
    for at in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "1066-10-14T09:00:00"):
        is_error(api.post("/api/monitors/shop_sales/run", json={"at": at}), 422, "body.at")


def test_dates_out_of_range_in_a_query_are_422_naming_the_parameter(api):
    for path, param in (("/api/metrics/sales/series", "from"), ("/api/metrics/sales/series", "to"),
                        ("/api/metrics/sales/quality", "at")):  # fmt: skip
        for value in ("-0001-01-01", "0001-01-01", "9999-12-31", "2262-05-01T00:00:00+14:00"):
            body = is_error(api.get(path, params={param: value}), 422, f"query.{param}")
            assert "out of range: a time must be from 1900-01-01 to before 2200-01-01" in body["error"], body
    assert api.get("/api/metrics/sales/series", params={"from": "2026-11-01", "to": "2026-11-03"}).status_code == 200


def test_a_date_that_is_not_one_is_422_too(api):
    body = is_error(api.get("/api/metrics/sales/series", params={"from": "not-a-date"}), 422, "query.from")
    assert "'not-a-date' is not a date or time" in body["error"]


def test_every_error_has_the_same_shape(api):
    inc = "/api/incidents/1"
    anonymous = TestClient(api.app)
    is_error(api.get("/api/nothing-here"), 404, "/api/nothing-here")
    assert "nothing at GET /api/nothing-here" in api.get("/api/nothing-here").json()["error"]
    r = api.put("/api/incidents")
    assert is_error(r, 405, "/api/incidents")["error"] == "PUT is not allowed on /api/incidents (allowed: GET)"
    for malformed in ('{"text": ', "{'text': 'hi'}", b"\xff\xfe"):
        r = api.post(f"{inc}/comment", content=malformed, headers={"Content-Type": "application/json"})
        assert "the body is not valid JSON" in is_error(r, 422, "body")["error"]
    body = is_error(api.post(f"{inc}/comment", json={"text": 42}), 422, "body.text")
    assert body["problems"] == [{"where": "body.text", "error": "Input should be a valid string (got 42)"}]
    is_error(anonymous.get("/api/incidents"), 401, None)
    is_error(api.post(f"{inc}/ack", headers=api.viewer), 403, None)
    is_error(api.get("/api/incidents/99"), 404)
    assert api.post(f"{inc}/ack").status_code == 200
    is_error(api.post(f"{inc}/ack"), 409)
    is_error(api.get("/api/metrics/sales/series", params={"grain": "year"}), 400, "grain")
    is_error(api.post("/api/inbox/x", content=b"x" * (2 * 1024 * 1024)), 413, "body")


def test_the_openapi_document_lists_each_routes_real_statuses(api):
    ops = spec_operations(api)
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"error"} and {"error", "where"} <= set(schemas["Error"]["properties"])
    assert "HTTPValidationError" not in schemas  # FastAPI's {"detail"} shape is never answered
    error_ref = {"$ref": "#/components/schemas/Error"}
    for method, path, op in ops:
        codes = op["responses"]
        has_params = bool(op.get("parameters")) or "requestBody" in op
        if op.get("security"):
            assert {"401", "403"} <= set(codes), (method, path)
        else:
            assert "429" in codes and "Retry-After" in codes["429"]["headers"], (method, path)
        if re.search(r"\{(\w+_id|name)\}", path):
            assert "404" in codes, (method, path)
        if "requestBody" in op:
            assert "413" in codes, (method, path)
        assert ("422" in codes) == has_params, (method, path)
        html = "text/html" in next(r for c, r in codes.items() if c.startswith("2")).get("content", {})
        for code, response in codes.items():
            if code.startswith("4") or code.startswith("5"):
                content = response["content"]
                assert (
                    content == {"text/html": {"schema": {"type": "string"}}}
                    if html and code in ("400", "404", "409")
                    else content == {"application/json": {"schema": error_ref}}
                ), (path, code)
    by_route = {(m, p): op["responses"] for m, p, op in ops}
    for flow in ("ack", "assign", "resolve", "reopen", "review"):
        assert "409" in by_route[("POST", f"/api/incidents/{{incident_id}}/{flow}")]
    assert "502" in by_route[("GET", "/api/metrics/{name}/series")]
    assert "413" in by_route[("POST", "/api/inbox/{box}")]


def test_a_body_over_the_limit_is_413_by_its_length_or_as_it_streams(api):
    api.ws.settings.max_body_bytes = 1000
    app = create_app(api.ws)
    c = TestClient(app, headers=dict(api.headers))
    box = f"big-{uuid.uuid4().hex[:8]}"  # the inbox is kept in memory, shared by the tests of this process
    r = c.post(f"/api/inbox/{box}", content=b"x" * 1001)
    body = is_error(r, 413, "body")
    assert body["error"] == (
        "the request body is 1001 bytes (Content-Length): the limit is 1000 bytes (METRICLOOP_MAX_BODY_BYTES)"
    )

    def chunks():  # no Content-Length: sent in pieces, counted as they arrive
        for _ in range(20):
            yield b"y" * 100

    r = c.post(f"/api/inbox/{box}", content=chunks())
    assert "content-length" not in r.request.headers
    assert is_error(r, 413, "body")["error"] == (
        "the request body is over 1000 bytes: the limit is 1000 bytes (METRICLOOP_MAX_BODY_BYTES)"
    )
    r = c.post("/api/incidents/1/comment", json={"text": "x" * 2000})
    is_error(r, 413, "body")
    assert c.get("/api/inbox", params={"box": box}).json() == []  # nothing over the limit got in
    under = "[" + ",".join(["0"] * 450) + "]"  # 901 bytes
    assert c.post(f"/api/inbox/{box}", content=under).status_code == 202  # under it, as before
    assert c.post("/api/incidents/1/comment", json={"text": "fine"}).status_code == 200
    assert c.get("/api/inbox", params={"box": box}).json()[0]["payload"] == [0] * 450


def test_the_routes_that_need_no_token_are_rate_limited_per_address(api):
    api.ws.settings.rate_limit_per_minute = 60
    api.ws.settings.rate_limit_burst = 3
    app = create_app(api.ws)
    key = secret_key_for(api.ws)
    ack, view = sign_action(1, "ack", key=key), sign_action(1, "view", key=key)
    public = [
        ("POST", "/api/inbox/x", {}),
        ("GET", "/api/health", {}),
        ("GET", "/api/incidents/1/ack", {"token": ack}),
        ("GET", "/api/incidents/1/resolve", {"token": "forged"}),
        ("POST", "/api/incidents/1/resolve", {"token": "forged"}),  # the confirmation of a link
        ("GET", "/incidents/1", {"token": view}),
    ]
    for n, (method, path, params) in enumerate(public):
        c = TestClient(app, client=(f"10.0.0.{n + 1}", 5000))  # one address per route: each has its own bucket
        answers = [c.request(method, path, params=params).status_code for _ in range(3)]
        assert 429 not in answers, (path, answers)
        r = c.request(method, path, params=params)
        body = is_error(r, 429, path)
        assert r.headers["Retry-After"] == "1", path
        assert body["error"] == (
            f"too many requests from 10.0.0.{n + 1} to the routes that need no token (at most 60 a minute, 3 at once): "
            "try again in 1 s"
        )
    other = TestClient(app, client=("10.0.0.99", 5000))
    assert other.post("/api/inbox/x").status_code == 202  # another address has its own bucket
    with_token = TestClient(app, client=("10.0.0.1", 5000), headers=dict(api.headers))
    assert all(with_token.get("/api/incidents").status_code == 200 for _ in range(10))  # token calls: no limit here


def test_the_rate_limit_refills_and_can_be_turned_off():
    from metricloop.api.guards import RateLimiter

    bucket = RateLimiter(per_minute=60, burst=2)
    assert [bucket.take("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert bucket.take("a", now=0.0) == pytest.approx(1.0)
    assert bucket.take("a", now=0.5) == pytest.approx(0.5)
    assert bucket.take("a", now=1.0) == 0.0  # one request a second comes back
    assert bucket.take("b", now=0.0) == 0.0
    off = RateLimiter(per_minute=0, burst=1)
    assert all(off.take("a", now=0.0) == 0.0 for _ in range(1000))
    many = RateLimiter(per_minute=60, burst=1)
    for i in range(RateLimiter.MAX_ADDRESSES + 50):
        many.take(f"10.{i}", now=0.0)
    assert len(many._buckets) == RateLimiter.MAX_ADDRESSES  # memory stays bounded


def test_a_served_instance_stops_a_chunked_body_at_the_limit_and_keeps_serving(api):
    """Over real HTTP (uvicorn on 127.0.0.1): a chunked upload with no Content-Length is cut off at the limit."""
    import threading
    import time

    import httpx
    import uvicorn

    from loopback import free_port

    api.ws.settings.max_body_bytes = 64 * 1024
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(api.ws), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)

        def endless():  # 512 KiB, sent in 64 KiB chunks
            for _ in range(8):
                yield b"z" * 65536

        r = httpx.post(f"http://127.0.0.1:{port}/api/inbox/flood", content=endless(), timeout=10)
        assert r.status_code == 413 and r.json()["where"] == "body"
        assert "the limit is 65536 bytes" in r.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()["status"] == "ok"
    finally:
        server.should_exit = True
        thread.join(10)
