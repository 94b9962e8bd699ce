"""The shared contract (HELPERS.md): FeedbackLabel rows read back by labels_for_monitor, the later label standing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loop_helpers import MONITOR

from metricloop.feedback.models import Feedback
from metricloop.feedback.service import FeedbackLabel, labels_for_monitor


def _row(**kw) -> Feedback:
    base = dict(
        label="false_alarm",
        monitor="shop_sales",
        metric="sales",
        slice="store=BJ-2",
        start=datetime(2026, 11, 16),
        end=datetime(2026, 11, 16),
        created_by="ann",
        created_at=datetime(2026, 11, 17, 1, tzinfo=UTC),
    )
    return Feedback(**{**base, **kw})


def test_labels_for_monitor_keeps_both_and_the_later_stands(shop):
    ws = shop(extra=MONITOR)
    t0 = datetime(2026, 11, 17, 1, tzinfo=UTC)
    with ws.db.session() as s:
        s.add_all(
            [
                _row(created_by="ann", label="false_alarm", created_at=t0),
                _row(created_by="bob", label="confirmed", created_at=t0 + timedelta(hours=1)),
                # a range on the metric with no monitor counts for every monitor of the metric
                _row(monitor=None, slice="*", label="missed", start=datetime(2026, 11, 1), end=datetime(2026, 11, 2)),
                _row(monitor="other_monitor", label="confirmed"),
                _row(label="expected", cause="promotion", slice="store=SH-1"),
            ]
        )
        s.commit()
    with ws.db.session() as s:
        everything = labels_for_monitor(s, "shop_sales", effective=False)
        standing = labels_for_monitor(s, "shop_sales")
    assert all(isinstance(lab, FeedbackLabel) for lab in everything)
    assert sorted(lab.created_by + ":" + lab.label for lab in everything if lab.slice == "store=BJ-2") == [
        "ann:false_alarm",
        "bob:confirmed",
    ]
    bj2 = [lab for lab in standing if lab.slice == "store=BJ-2"]
    assert [(lab.created_by, lab.label) for lab in bj2] == [("bob", "confirmed")]
    assert {lab.label for lab in standing} == {"confirmed", "missed", "expected"}
    assert all(lab.monitor in ("shop_sales", None) for lab in standing)
    promo = next(lab for lab in standing if lab.label == "expected")
    assert promo.cause == "promotion" and promo.created_at.tzinfo is not None
    assert promo.start == datetime(2026, 11, 16) and promo.end == datetime(2026, 11, 16)
