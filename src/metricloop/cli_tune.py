"""`metricloop tune MONITOR`: backtest a monitor with its feedback, show before and after, apply on request."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from metricloop.cli_text import Table, Text, esc
from metricloop.errors import MetricloopError

ROWS = (
    ("alerts_per_month", "每月告警 / Alerts per month", None),
    ("alerts_per_series_per_month", "每序列每月告警 / Alerts per series per month", None),
    ("confirmed_kept", "保留的已确认告警 / Confirmed kept", "confirmed"),
    ("false_alarms_removed", "去掉的误报 / False alarms removed", "false_alarms"),
    ("missed_caught", "补上的漏报 / Missed caught", "missed"),
)
LABEL_WORDS = {"confirmed": "已确认 confirmed", "false_alarm": "误报 false alarm", "expected": "符合预期 expected",
               "missed": "漏报 missed", None: "未标注 unlabelled"}


def print_tuning(console, t: dict[str, Any], *, row: dict[str, Any] | None = None) -> None:
    """Before and after, the knobs that change, and the alerts that would disappear or appear."""
    budget = t["budget"]
    head = (f"监控 / Monitor {t['monitor']} · {t['series']} 序列 series × {t['months']} 月 months · "
            f"预算 / budget {budget:g} /series/month")
    console.print(Text(head, style="bold"))
    for note in t.get("notes", []):
        console.print(Text(f"• {note['zh']} / {note['en']}", style="yellow"))
    table = Table("", "之前 / Before", "之后 / After", title="回测 / Backtest")
    for key, words, total in ROWS:
        table.add_row(words, *(f"{side[key]} / {side[total]}" if total else f"{side[key]:g}"
                               for side in (t["before"], t["after"])))
    console.print(table)
    if t["changes"]:
        knobs = Table("参数 / Knob", "之前 / Before", "之后 / After", title="修改 / Changes")
        for c in t["changes"]:
            knobs.add_row(c["knob"], _show(c["before"]), _show(c["after"]))
        console.print(knobs)
    if t["overrides"]:
        ov = Table("切片 / Slice", "参数 / Knobs", "原因 / Why", title="切片覆盖 / Per-slice overrides")
        for o in t["overrides"]:
            ov.add_row(o["slice"], ", ".join(f"{k}={v}" for k, v in o.items() if k not in ("slice", "reason")),
                       o.get("reason", ""))
        console.print(ov)
    for key, words, style in (("disappear", "消失的告警 / Alerts that disappear", "red"),
                              ("appear", "新出现的告警 / Alerts that appear", "green")):
        items = t[key]
        if not items:
            continue
        lst = Table("切片 / Slice", "开始 / Start", "结束 / End", "标注 / Label", title=f"{words} ({len(items)})")
        for a in items:
            lst.add_row(a["slice"], a["start"][:16], a["end"][:16], Text(LABEL_WORDS.get(a["label"], a["label"]),
                                                                          style=style))
        console.print(lst)
    if t["tradeoff"]:
        console.print(Text(f"取舍 / Trade-off: {t['tradeoff']['zh']}\n{t['tradeoff']['en']}", style="yellow"))
    if row is not None:
        state = {"open": "等待批准 / waiting for approval", "applied": "已应用 / applied",
                 "unchanged": "无需修改 / nothing to change", "rejected": "已拒绝 / rejected"}.get(row["status"],
                                                                                            row["status"])
        extra = f" → 监控版本 / monitor version {row['applied_version']}" if row.get("applied_version") else ""
        console.print(f"建议 / suggestion [bold]#{row['id']}[/]: {esc(state)}{esc(extra)}")


def _show(v: Any) -> str:
    return "—" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def register(app: typer.Typer) -> None:
    from metricloop import cli

    @app.command("tune")
    def tune(
        monitor: Annotated[str, typer.Argument(help="The monitor to tune.")],
        budget: Annotated[str, typer.Option("--budget", help="Alert budget: alerts per series per month, e.g. "
                                                              "2/series/month.")] = "2/series/month",
        apply: Annotated[bool, typer.Option("--apply", help="Apply the setting found (a new monitor version; "
                                                             "`metricloop rollback` undoes it).")] = False,
        reject: Annotated[bool, typer.Option("--reject", help="Reject a stored suggestion (with --suggestion).")
                          ] = False,
        suggestion: Annotated[int | None, typer.Option("--suggestion", help="With --apply/--reject: act on this "
                                                                            "stored suggestion instead of "
                                                                            "computing a new one.")] = None,
        detectors: Annotated[str | None, typer.Option("--detectors", help="Also try these detectors, comma-"
                                                                          "separated (default: the monitor's, "
                                                                          "and auto).")] = None,
        history: Annotated[str | None, typer.Option("--history", help="How much history to backtest "
                                                                      "(default 730d for days).")] = None,
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
        actor: Annotated[str | None, typer.Option("--as", help="Who applies it (default: you).")] = None,
    ) -> None:
        """Backtest MONITOR with its feedback as labels and search its knobs (sensitivity, minimum change,
        minimum duration, direction, volume floor, calendar use, detector) for the setting that keeps every
        confirmed alert and catches every missed range within the alert budget. Stores the result as a
        suggestion; --apply makes it the monitor's new version."""
        from metricloop.tuning import service

        if fmt not in ("table", "json"):
            raise MetricloopError(f"unknown format '{fmt}' (choose table or json)", where="--format")
        if apply and reject:
            raise MetricloopError("give --apply or --reject, not both", where="--reject")
        if reject and suggestion is None:
            raise MetricloopError("--reject needs --suggestion ID (see GET /api/monitors/{name}/tuning)",
                                  where="--suggestion")
        if suggestion is not None and not (apply or reject):
            raise MetricloopError("--suggestion goes with --apply or --reject", where="--suggestion")
        ws = cli.open_ws()
        who = actor or cli.settings().author
        if suggestion is not None:
            act = service.apply_suggestion if apply else service.reject_suggestion
            row = service.suggestion_dict(act(ws, monitor, actor=who, suggestion_id=suggestion))
            tuning = row["tuning"]
        else:
            names = [d.strip() for d in detectors.split(",") if d.strip()] if detectors else None
            stored, computed = service.suggest(ws, monitor, budget=service.parse_budget(budget), actor=who,
                                               detectors=names, history=history)
            if apply and stored.status == "open":
                stored = service.apply_suggestion(ws, monitor, actor=who, suggestion_id=stored.id)
            row, tuning = service.suggestion_dict(stored), computed.as_dict()
        if fmt == "json":
            cli.console.print_json(json.dumps({**row, "tuning": tuning}, default=str))
        else:
            print_tuning(cli.console, tuning, row=row)
