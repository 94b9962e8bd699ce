"""The demo's past: resolved incidents of the injected events before the replayed week, with a root-cause
category, the cause and the actions that worked, so similar-incident search has something to find.

They come from the demo's own ground truth (data/labels.csv), shaped as the demo's monitors would have opened
them (monitor, metric, slices, title, owner by the routes), opened the morning after the event began and resolved
when it ended. Each is marked with the label `history=demo`. Installing again adds none that are already there.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

SH = ZoneInfo("Asia/Shanghai")

# kind → (monitor, the label row's metric and grain it is opened on, category, actions zh / en)
KINDS = {
    "stockout": ("store_sales", "gmv", "day", "stock_out",
                 "紧急补货（区域仓调拨） / restocked from the regional warehouse"),
    "carrier_delay": ("fulfilment", "fulfilment_rate", "day", "supplier_carrier",
                      "切换备用承运商，催办积压包裹 / switched to a backup carrier and chased the backlog"),
    "channel_outage": ("channel_orders", "orders", "hour", "outage",
                       "回滚当天的发布，恢复下单 / rolled back the day's release"),
    "complaint_surge": ("city_complaints", "complaints", "day", "other",
                        "逐一回访并排查门店 / called every customer back and checked the stores"),
}
QUALITY = ("supplier_carrier", "下架问题批次，联系供应商 / pulled the batch and contacted the supplier")


def _events(labels: Path) -> list[dict]:
    """One event per labelled incident: its kind, the rows of the metric it is opened on, its span, its words."""
    events: dict[str, dict] = {}
    with labels.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            spec = KINDS.get(row["kind"])
            if spec is None or row["metric"] != spec[1] or row["grain"] != spec[2]:
                continue
            e = events.setdefault(row["incident_id"], {"kind": row["kind"], "slices": [], "row": row})
            e["slices"].append(row["slice"] or "*")
    return list(events.values())


def _depth(slice_: str) -> int:
    return 0 if slice_ == "*" else slice_.count(",") + 1


def seed_history(ws, *, before: date) -> int:
    """Seed the resolved past incidents whose event ended before `before`. Returns how many were added."""
    from metricloop.db.times import as_utc
    from metricloop.incidents.models import Incident, IncidentEvent
    from metricloop.knowledge.service import record_resolution
    from metricloop.routing.service import resolve_route

    labels = ws.data_dir / "labels.csv"
    if not labels.exists():
        return 0
    catalog = ws.catalog()
    monitors = catalog.all("monitor")
    added = 0
    with ws.db.session() as s:
        for e in _events(labels):
            monitor_name, metric_name, grain, category, actions = KINDS[e["kind"]]
            row = e["row"]
            start, end = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"])
            if end.date() > before or monitor_name not in monitors or metric_name not in catalog.metrics:
                continue
            if e["kind"] == "complaint_surge" and "质量" in row["description_zh"]:
                category, actions = QUALITY
            monitor, metric = monitors[monitor_name], catalog.metric(metric_name)
            slices = sorted(e["slices"], key=_depth)  # as the pipeline orders a group: the shallowest first
            opened = (start + timedelta(hours=2) if grain == "hour" else datetime.combine(start.date() + timedelta(
                days=1), time(9))).replace(tzinfo=SH)
            resolved = max(end.replace(tzinfo=SH), opened + timedelta(hours=1))
            if s.scalar(select(Incident.id).where(Incident.monitor == monitor_name, Incident.created_at ==
                                                  as_utc(opened)).limit(1)) is not None:
                continue
            lead = slices[0]
            dims = {k: v for part in (lead.split(",") if lead != "*" else []) for k, v in [part.split("=", 1)]}
            labels_ = {"monitor": monitor_name, "metric": metric_name, "domain": metric.domain,
                       **(monitor.labels or {}), **dims, "history": "demo"}
            where = "" if lead == "*" else f" · {lead}"
            titles = {code: f"{metric.label(code)}{where} {'低于预期' if code == 'zh' else 'below expected'}"
                      for code in ("zh", "en")}
            decision = resolve_route(ws, catalog, {**labels_, "severity": "P2"}, at=opened)
            owner = decision.assignee or metric.owner
            inc = Incident(
                title=titles.get(ws.config.get("language", "zh"), titles["zh"]),
                severity="P2", kind="metric", monitor=monitor_name, metric=metric_name, group_key=f"history:{lead}",
                slices=slices, labels=labels_, assignee=owner, team=decision.team, route=",".join(decision.routes),
                channels=[], escalation_policy=decision.escalation or "", state="reviewed",
                summary={"title_zh": titles["zh"], "title_en": titles["en"], "direction": row["direction"],
                         "explanation_zh": row["description_zh"], "explanation_en": row["description"],
                         "metric_title_zh": metric.title.zh, "metric_title_en": metric.title.en,
                         "unit": metric.unit, "time": start.isoformat()},
                root_cause=f"{row['description_zh']} / {row['description']}", resolution=actions,
                created_at=as_utc(opened), acknowledged_at=as_utc(opened + timedelta(minutes=20)),
                resolved_at=as_utc(resolved), reviewed_at=as_utc(resolved + timedelta(days=1)),
                updated_at=as_utc(resolved + timedelta(days=1)),
            )
            s.add(inc)
            s.flush()
            for kind, at, who, text in (
                ("created", opened, "metricloop", row["description"]),
                ("acknowledged", opened + timedelta(minutes=20), owner, f"{owner} is on it"),
                ("resolved", resolved, owner, actions),
                ("reviewed", resolved + timedelta(days=1), owner, "复盘完成 / reviewed"),
            ):
                s.add(IncidentEvent(incident_id=inc.id, kind=kind, actor=who, at=as_utc(at), message=text,
                                    data={"category": category} if kind == "resolved" else {}))
            record_resolution(s, catalog, inc, category=category, cause=inc.root_cause, actions=actions, actor=owner,
                              now=as_utc(resolved))
            added += 1
    return added
