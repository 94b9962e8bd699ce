"""The JSON API, in-process over a real workspace."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.metrics.query import query_metric


def reader(ws) -> dict:
    """Headers with a viewer token: every read of the API needs one (tests/test_api_auth.py)."""
    with ws.db.session() as s:
        return {"Authorization": f"Bearer {create_token(s, name='reader', role='viewer')}"}


@pytest.fixture(scope="module")
def client(shared_shop_ws):
    with TestClient(create_app(shared_shop_ws), headers=reader(shared_shop_ws)) as c:
        yield c


def test_health_and_docs(client):
    assert client.get("/api/health").json()["status"] == "ok"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/api/metrics", "/api/metrics/{name}", "/api/metrics/{name}/series", "/api/sources"} <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/api/metrics/{name}/series"]["get"]["parameters"]}
    assert {"by", "from", "to", "grain", "where"} <= params
    assert client.get("/", follow_redirects=False).headers["location"] == "/console"  # the console; /docs is the API


def test_list_metrics(client):
    metrics = client.get("/api/metrics").json()
    assert {m["name"] for m in metrics} >= {"gmv", "aov", "conversion_rate"}
    gmv = next(m for m in metrics if m["name"] == "gmv")
    assert gmv["owner"] == "ana@example.com" and gmv["domain"] == "sales"
    traffic = client.get("/api/metrics", params={"domain": "traffic"}).json()
    assert {m["name"] for m in traffic} == {"visitors", "conversion_rate"}


def test_get_one_metric(client):
    body = client.get("/api/metrics/aov").json()
    assert body["name"] == "aov"
    assert body["ratio"]["denominator"] == {"agg": "count"}
    assert client.get("/api/metrics/sales").json()["name"] == "gmv"  # an alias


def test_unknown_metric_is_404_with_a_clear_body(client):
    for path in ("/api/metrics/gvm", "/api/metrics/gvm/series", "/api/metrics/gvm/quality"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["error"] == "no metric named 'gvm'. Did you mean gmv?"


def test_series(client, shared_shop_ws):
    params = {"by": "region,channel", "from": "2024-01-08", "to": "2024-01-15", "where": "region=East|West"}
    r = client.get("/api/metrics/gmv/series", params=params)
    assert r.status_code == 200
    body = r.json()
    assert (body["metric"], body["by"], body["grain"]) == ("gmv", ["region", "channel"], "day")
    assert body["from"] == "2024-01-08T00:00:00" and body["to"] == "2024-01-15T00:00:00"
    rows = body["rows"]
    assert set(rows[0]) == {"time", "region", "channel", "value", "row_count", "flag"}
    assert {r["region"] for r in rows} == {"East", "West"}
    want = query_metric(shared_shop_ws, "gmv", by=["region", "channel"], start="2024-01-08", end="2024-01-15",
                        where=["region=East|West"]).df  # fmt: skip
    assert len(rows) == len(want)
    values = [np.nan if r["value"] is None else r["value"] for r in rows]
    np.testing.assert_allclose(values, want["value"].to_numpy())  # NaN where a bucket is missing
    assert [r["flag"] for r in rows] == [None if f is None or f != f else f for f in want["flag"]]


def test_series_where_is_repeatable_and_grain_changes(client):
    r = client.get(
        "/api/metrics/orders/series?where=region=East&where=channel=app&grain=week&from=2024-01-08&to=2024-01-22"
    )
    body = r.json()
    assert r.status_code == 200 and body["grain"] == "week"
    assert [row["time"] for row in body["rows"]] == ["2024-01-08T00:00:00.000", "2024-01-15T00:00:00.000"]


def test_series_nulls_are_json_null(client):
    rows = client.get("/api/metrics/web_return_rate/series", params={"from": "2024-01-20", "to": "2024-01-21"}).json()
    assert rows["rows"][0]["value"] is None and rows["rows"][0]["flag"] == "zero_denominator"
    rows = client.get("/api/metrics/gmv/series", params={"from": "2024-03-01", "to": "2024-03-02"}).json()["rows"]
    assert rows == [{"time": "2024-03-01T00:00:00.000", "value": None, "row_count": 0, "flag": "missing"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "regoin"}, "cannot be sliced by 'regoin'"),
        ({"by": "region;drop table orders"}, "cannot be sliced by 'region;drop table orders'"),
        ({"where": "store=1"}, "cannot be sliced by 'store'"),
        ({"where": "region"}, "'region' is not DIM=VALUE"),
        ({"grain": "year"}, "grain must be one of"),
    ],
)
def test_bad_parameters_are_400(client, params, message):
    r = client.get("/api/metrics/gmv/series", params=params)
    assert r.status_code == 400
    assert message in r.json()["error"]
    assert r.json()["where"] in ("by", "where", "grain")


def test_a_bad_date_is_422_naming_the_parameter(client):
    r = client.get("/api/metrics/gmv/series", params={"from": "not-a-date"})  # checked before the query runs
    assert r.status_code == 422 and r.json()["where"] == "query.from"
    assert "'not-a-date' is not a date or time" in r.json()["error"]


@pytest.mark.parametrize("value", ["East' OR 1=1 --", "x'; DROP TABLE orders; --", "East\\' OR '1'='1"])
def test_injection_in_api_parameters(client, value):
    window = {"from": "2024-01-08", "to": "2024-01-10"}
    r = client.get("/api/metrics/gmv/series", params={"where": f"region={value}", **window})
    assert r.status_code == 200
    assert [row["row_count"] for row in r.json()["rows"]] == [0, 0]
    after = client.get("/api/metrics/gmv/series", params=window).json()["rows"]
    assert all(row["row_count"] > 0 for row in after)


def test_quality(client):
    checks = client.get("/api/metrics/gmv/quality", params={"at": "2024-02-21T12:00"}).json()
    assert {(c["check"], c["status"], c["slice"]) for c in checks} == {
        ("freshness", "ok", "*"),
        ("completeness", "fail", "region=North"),
    }


def test_sources(client):
    sources = client.get("/api/sources").json()
    assert [s["name"] for s in sources] == ["shop"]
    assert sources[0]["type"] == "duckdb"


@pytest.mark.postgres
def test_an_unreachable_source_is_502_with_a_clear_body(make_ws, helpers, monkeypatch):
    monkeypatch.setenv("ML_TEST_API_PASSWORD", "api-s3cret")
    ws = make_ws()
    source = {"name": "down", "type": "sql", "url": "postgresql+psycopg://u:${ML_TEST_API_PASSWORD}@127.0.0.1:1/test"}
    helpers.apply_text(ws, helpers.defs_yaml([source], [helpers.shop_metrics("down")[0]]), check=False)
    with TestClient(create_app(ws), headers=reader(ws)) as c:
        r = c.get("/api/metrics/gmv/series")
        assert r.status_code == 502
        assert r.json()["where"] == "source 'down'" and "cannot connect" in r.json()["error"]
        assert "api-s3cret" not in r.text
        assert "api-s3cret" not in c.get("/api/sources").text
