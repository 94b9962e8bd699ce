"""Reads of the API write nothing: the token's `last_used_at` is kept at most once a minute, so concurrent GETs
never queue on the database's write lock (bench/api_load.py measures the throughput)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import event, select

from metricloop.app import create_app
from metricloop.auth.models import ApiToken
from metricloop.auth.service import create_token
from metricloop.db.times import aware


def test_reads_write_last_used_at_at_most_once_a_minute(make_ws):
    ws = make_ws()
    with ws.db.session() as s:
        token = create_token(s, name="reader", role="viewer")
    client = TestClient(create_app(ws))
    writes = []

    def count(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            writes.append(statement)

    event.listen(ws.db.engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert client.get("/api/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert len(writes) == 1, writes  # the first use is recorded, the next four within the minute are not
        with ws.db.session() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.name == "reader"))
            first = aware(row.last_used_at)
            assert datetime.now(UTC) - first < timedelta(minutes=1)
            row.last_used_at = first - timedelta(minutes=2)  # a minute later, it is recorded again
        writes.clear()
        assert client.get("/api/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert len(writes) == 1 and "api_tokens" in writes[0]
    finally:
        event.remove(ws.db.engine, "before_cursor_execute", count)
    with ws.db.session() as s:
        assert aware(s.scalar(select(ApiToken.last_used_at))) > first - timedelta(seconds=1)


def test_the_catalog_is_parsed_once_per_change(make_ws):
    from metricloop.definitions import service

    ws = make_ws()
    first = ws.catalog()
    assert ws.catalog() is first  # unchanged definitions: the parsed catalog is reused
    text = """
sources:
  - {name: files, type: duckdb, tables: {sales: data/sales.csv}}
"""
    path = ws.home / "defs" / "files.yaml"
    path.write_text(text)
    entries, problems = service.read_definitions([path])
    with ws.db.session() as s:
        service.apply(s, entries=entries, problems=problems, author="tester", checks=[])
    changed = ws.catalog()
    assert changed is not first and "files" in changed.sources
    assert ws.catalog() is changed
