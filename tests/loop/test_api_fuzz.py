"""The fuzz gate: schemathesis generates requests for every operation of the OpenAPI document (valid ones, ones on
the ids and names that exist, and ones that break the schema on purpose) and sends them with an operator's token to
the app, in process, on a shop workspace with a monitor, a route, a channel, incidents, alerts, a run, outbox rows
and a silence, its state on SQLite and on PostgreSQL. No answer may be a
server error, and every answer must be one the document lists, with its content type and schema.

It is bounded: EXAMPLES requests per operation (fewer once BUDGET seconds have gone), under two minutes for both
databases. It is
deterministic (derandomized), so a failure here is the same failure on every run; the report lists each one with a
curl line to reproduce it.
"""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient
from loop_helpers import FOUR_DROPS as DROPS
from loop_helpers import FOUR_DROPS_LOOP as LOOP
from loop_helpers import monitor_yaml, morning

pytestmark = pytest.mark.slow

# A deeper run by hand: FUZZ_EXAMPLES=200 FUZZ_BUDGET=900 .venv/bin/pytest tests/loop/test_api_fuzz.py
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 15))  # per operation
BUDGET = float(os.environ.get("FUZZ_BUDGET", 45))  # seconds per state database; past it, a few requests per operation




@pytest.fixture
def fuzz_app(shop):
    """A shop with a monitor, a route and a channel, one morning's run (incidents, alerts, outbox rows), a silence,
    a comment, and an operator's token; state on SQLite or PostgreSQL (stricter: 32-bit ids, no NUL in text). The
    rate limit is off here: it would answer most token-less requests with 429 (tested in test_api_hardening.py)."""
    from metricloop.app import create_app
    from metricloop.auth.service import create_token
    from metricloop.monitors.service import run_monitor

    monitor = monitor_yaml(
        detector={"detector": "change", "offset": "last_week", "max_pct": 0.05, "direction": "down"},
        slicing={"dimensions": ["store"], "total": False},
        group="none",
    )
    ws = shop(effects=DROPS, extra=monitor + LOOP)
    ws.settings.rate_limit_per_minute = 0
    run = run_monitor(ws, "shop_sales", at=morning("2026-11-17"))
    assert run.status == "ok" and run.alerts == 4
    with ws.db.session() as s:
        token = create_token(s, name="fuzz", role="operator", user="fuzz@shop.test")
    app = create_app(ws)
    auth = {"Authorization": f"Bearer {token}"}
    c = TestClient(app, headers=auth)
    incidents = c.get("/api/incidents").json()
    silence = c.post("/api/silences", json={"matchers": ["store=SH-1"], "reason": "fuzz", "duration_minutes": 60})
    assert silence.status_code == 201, silence.text
    assert c.post(f"/api/incidents/{incidents[0]['id']}/comment", json={"text": "looking"}).status_code == 200
    outbox = c.get("/api/outbox").json()
    assert len(incidents) == 4 and outbox
    existing = {
        "incident_id": incidents[0]["id"],
        "silence_id": silence.json()["id"],
        "notification_id": outbox[0]["id"],
        "run_id": run.id,
        "metric": "sales",
        "monitor": "shop_sales",
    }
    return app, auth, existing


def _existing(path: str, existing: dict) -> dict:
    out = {k: v for k, v in existing.items() if "{" + k + "}" in path}
    if "{name}" in path:
        out["name"] = existing["metric"] if path.startswith("/api/metrics") else existing["monitor"]
    return out


def test_no_server_error_and_no_answer_outside_the_schema(fuzz_app):
    import hypothesis.strategies as st
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    app, auth, existing = fuzz_app
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, list[str]] = {}
    answered: dict[str, dict[int, int]] = {}

    def fuzz(op, strategy, examples: int, seen: dict[int, int]):
        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.headers = {**(case.headers or {}), **auth}  # every call as the operator
            try:
                response = case.call_and_validate(checks=checks)
            except (Exception, BaseExceptionGroup) as e:  # failed checks (a group), or the app's own exception
                failures.setdefault(op.label, []).append(f"{type(e).__name__}: {e}"[:1500])
                return
            seen[response.status_code] = seen.get(response.status_code, 0) + 1

        return run

    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35
    for op in operations:
        strategies = [op.as_strategy(), op.as_strategy(GenerationMode.NEGATIVE)]
        fixed = _existing(op.path, existing)
        if fixed:
            strategies.append(op.as_strategy(path_parameters=fixed))
        examples = EXAMPLES if time.monotonic() - started < BUDGET else 3

        fuzz(op, st.one_of(strategies), examples, answered.setdefault(op.label, {}))()
    took = time.monotonic() - started
    sent = sum(sum(v.values()) for v in answered.values()) + sum(len(v) for v in failures.values())
    report = "\n\n".join(f"== {label} ({len(found)})\n" + "\n--\n".join(found[:3]) for label, found in failures.items())
    assert not failures, f"{sum(len(v) for v in failures.values())} failures in {sent} requests:\n{report}"
    assert sent >= 10 * len(operations)  # it really sent them
    assert any(200 in v or 201 in v for v in answered.values()) and any(404 in v for v in answered.values())
    assert any(422 in v for v in answered.values())
    print(f"schemathesis: {sent} requests to {len(operations)} operations in {took:.0f} s, no failure")
