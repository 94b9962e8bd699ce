"""GET /api/metrics/{name}/series is bounded in rows and bytes (METRICLOOP_SERIES_MAX_ROWS / _MAX_BYTES)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from metricloop.app import create_app
from metricloop.auth.service import create_token
from metricloop.settings import Settings


@pytest.fixture
def api(shop_ws):
    with shop_ws.db.session() as s:
        token = create_token(s, name="reader", role="viewer")
    client = TestClient(create_app(shop_ws), headers={"Authorization": f"Bearer {token}"})

    def limit(**settings):
        shop_ws.settings = shop_ws.settings.model_copy(update=settings)

    client.limit = limit
    return client


def refused(r, maximum: str) -> str:
    assert r.status_code == 422, r.text[:300]
    body = r.json()
    assert body["where"] == "series"
    assert maximum in body["error"] and "narrow the query" in body["error"]
    return body["error"]


def test_a_window_with_too_many_buckets_is_refused_before_the_source_is_asked(api):
    api.limit(series_max_rows=1000)
    r = api.get("/api/metrics/gmv/series", params={"from": "2024-01-01", "to": "2024-03-01", "grain": "hour"})
    error = refused(r, "more than 1,000 rows")
    assert "hour buckets" in error
    ok = api.get("/api/metrics/gmv/series", params={"from": "2024-01-01", "to": "2024-02-01", "grain": "hour"})
    assert ok.status_code == 200 and len(ok.json()["rows"]) == 31 * 24


def test_too_many_rows_from_the_source_are_refused(api):
    api.limit(series_max_rows=500)  # 4 regions x 3 channels x 60 days = 720 rows
    refused(api.get("/api/metrics/gmv/series", params={"by": "region,channel"}), "more than 500 rows")
    ok = api.get("/api/metrics/gmv/series", params={"by": "region"})  # 240 rows
    assert ok.status_code == 200 and len(ok.json()["rows"]) == 240


def test_filling_missing_buckets_never_builds_more_than_the_limit(api):
    api.limit(series_max_rows=300)  # 240 rows at the source, 274 days, 4 x 274 rows once filled
    r = api.get("/api/metrics/gmv/series", params={"by": "region", "from": "2023-06-01", "to": "2024-03-01"})
    assert "4 slices" in refused(r, "more than 300 rows")


def test_too_many_bytes_are_refused(api):
    api.limit(series_max_bytes=2000)
    error = refused(api.get("/api/metrics/gmv/series", params={"by": "region"}), "more than 2,000")
    assert "bytes" in error


def test_the_defaults_refuse_a_huge_query_at_once(api):
    assert Settings().series_max_rows == 100_000 and Settings().series_max_bytes == 20_000_000
    r = api.get("/api/metrics/gmv/series", params={"from": "2000-01-01", "to": "2030-01-01", "grain": "minute"})
    refused(r, "more than 100,000 rows")


def test_the_limits_are_settings(monkeypatch):
    monkeypatch.setenv("METRICLOOP_SERIES_MAX_ROWS", "7")
    monkeypatch.setenv("METRICLOOP_SERIES_MAX_BYTES", "9")
    assert (Settings().series_max_rows, Settings().series_max_bytes) == (7, 9)
