"""CLI for feedback: `metricloop feedback give|list` and `metricloop quality`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated

import typer

from metricloop.cli_text import Table, esc
from metricloop.errors import MetricloopError


def _time(text: str | None, where: str) -> datetime | None:
    """A date or time as typed: naive = the metric's local time; with an offset, converted to it."""
    if not text:
        return None
    import pandas as pd

    try:
        return pd.Timestamp(text).to_pydatetime()
    except ValueError:
        raise MetricloopError(f"{text!r} is not a date or time (use e.g. 2026-11-10)", where=where) from None


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _dur(x) -> str:
    return "-" if x is None else str(timedelta(seconds=int(x)))


def register(app: typer.Typer) -> None:
    from metricloop import cli

    console = cli.console
    feedback_app = typer.Typer(
        help="Feedback: label alerts, incidents and ranges of a series (confirmed, false_alarm, expected, "
        "new_normal, missed).",
        no_args_is_help=True,
    )
    app.add_typer(feedback_app, name="feedback")

    @feedback_app.command("give")
    def give(
        label: Annotated[str, typer.Argument(help="confirmed | false_alarm | expected | new_normal | missed")],
        alert: Annotated[int | None, typer.Option("--alert", help="Label this alert.")] = None,
        incident: Annotated[int | None, typer.Option("--incident", help="Label every alert of this incident.")] = None,
        monitor: Annotated[str | None, typer.Option("--monitor", help="A range of this monitor's series.")] = None,
        metric: Annotated[str | None, typer.Option("--metric", help="A range of this metric's series.")] = None,
        slice_: Annotated[str | None, typer.Option("--slice", help="e.g. region=North,store=BJ-2 (default *).")] = None,
        start: Annotated[str | None, typer.Option("--start", help="The range's first bucket, e.g. 2026-11-10.")] = None,
        end: Annotated[str | None, typer.Option("--end", help="The range's last bucket (default: --start).")] = None,
        since: Annotated[str | None, typer.Option("--since", help="new_normal: the date the new level began.")] = None,
        cause: Annotated[
            str | None, typer.Option("--cause", help="expected: holiday | promotion | data_issue | known_event | other")
        ] = None,
        calendar: Annotated[
            bool, typer.Option("--calendar", help="expected + promotion/known_event: add the calendar event too.")
        ] = False,
        event_name: Annotated[str | None, typer.Option("--event-name", help="The calendar event's name.")] = None,
        note: Annotated[str, typer.Option("--note", help="Why, in a few words.")] = "",
        actor: Annotated[str | None, typer.Option("--as", help="Who gives it (default: you).")] = None,
        fmt: Annotated[str, typer.Option("--format", help="text | json")] = "text",
    ) -> None:
        """Give a label; it appears on the incident's timeline, and its effect is shown below."""
        from metricloop.feedback import flows

        label = label.replace("-", "_")
        when = _time(since, "--since") if label == "new_normal" and since else _time(start, "--start")
        ws = cli.open_ws()
        with ws.db.session() as s:
            given = flows.give(
                s,
                ws,
                ws.catalog(),
                label=label,
                actor=actor or cli.settings().author,
                via="cli",
                alert_id=alert,
                incident_id=incident,
                monitor=monitor,
                metric=metric,
                slice_=slice_,
                start=when,
                end=_time(end, "--end"),
                cause=cause,
                note=note,
                add_to_calendar=calendar,
                event_name=event_name,
            )
        if fmt == "json":
            print(json.dumps(given.to_dict(), ensure_ascii=False, indent=2))
            return
        for lab in given.labels:
            target = f"alert #{lab.alert_id}" if lab.alert_id else f"{lab.metric} [{lab.slice}]"
            where = f" (incident #{lab.incident_id})" if lab.incident_id else ""
            console.print(
                f"[green]✓[/] #{lab.id} {esc(lab.label)}{' (' + lab.cause + ')' if lab.cause else ''} on "
                f"{esc(target)}{where}, {lab.start:%Y-%m-%d}…{lab.end:%Y-%m-%d}"
            )
        for old in given.replaced:
            console.print(f"  replaces {esc(old.created_by)}'s {esc(old.label)} (#{old.id}, kept)")
        lang = ws.config.get("language", "zh")
        for e in given.effects:
            console.print(f"  → {esc(e['message_zh'] if lang == 'zh' else e['message_en'])}")

    @feedback_app.command("list")
    def list_(
        monitor: Annotated[str | None, typer.Option("--monitor")] = None,
        incident: Annotated[int | None, typer.Option("--incident")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Include labels a later one replaced.")] = False,
        limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    ) -> None:
        """Labels, newest first: the standing ones (the later of two on the same target), or --all."""
        from sqlalchemy import select

        from metricloop.feedback.flows import label_dict
        from metricloop.feedback.models import Feedback
        from metricloop.feedback.service import effective_labels, label_of

        ws = cli.open_ws()
        with ws.db.session() as s:
            q = select(Feedback)
            if monitor:
                q = q.where(Feedback.monitor == monitor)
            if incident:
                q = q.where(Feedback.incident_id == incident)
            labels = [label_of(r) for r in s.scalars(q.order_by(Feedback.created_at, Feedback.id))]
        if not all_:
            labels = effective_labels(labels)
        labels = list(reversed(labels))[:limit]
        if fmt == "json":
            print(json.dumps([label_dict(lab) for lab in labels], ensure_ascii=False, indent=2))
            return
        table = Table()
        for c in ("id", "label", "cause", "monitor", "slice", "range", "alert", "incident", "by", "at (UTC)"):
            table.add_column(c)
        for lab in labels:
            table.add_row(
                str(lab.id),
                lab.label,
                lab.cause or "",
                lab.monitor or "",
                lab.slice,
                f"{lab.start:%Y-%m-%d}…{lab.end:%Y-%m-%d}",
                str(lab.alert_id or ""),
                str(lab.incident_id or ""),
                lab.created_by,
                f"{lab.created_at:%Y-%m-%d %H:%M}",
            )
        console.print(table)

    @app.command("quality")
    def quality_cmd(
        by: Annotated[str, typer.Option("--by", help="monitor | metric | team | owner")] = "monitor",
        days: Annotated[int, typer.Option("--days", help="The window: the last N days.")] = 90,
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    ) -> None:
        """Alert quality from feedback: precision, false alarms, missed, alerts per series per month, labelled
        share, MTTA and MTTR against SLA."""
        from metricloop.feedback.quality import quality

        if fmt not in ("table", "json"):
            raise MetricloopError(f"unknown format {fmt!r}; choose table or json", where="--format")
        ws = cli.open_ws()
        with ws.db.session() as s:
            q = quality(s, ws.catalog(), by=by, days=days)
        if fmt == "json":
            print(json.dumps(q, ensure_ascii=False, indent=2))
            return
        table = Table(title=f"quality by {by}, {q['since'][:10]} … {q['until'][:10]}")
        cols = (
            by,
            "alerts",
            "per series/month",
            "labelled",
            "precision",
            "false alarms",
            "expected",
            "new normal",
            "missed",
            "MTTA",
            "ack in SLA",
            "MTTR",
            "resolve in SLA",
        )
        for c in cols:
            table.add_column(c)
        for r in q["rows"]:
            per = r["alerts_per_series_month"]
            table.add_row(
                str(r[by]),
                str(r["alerts"]),
                "-" if per is None else f"{per:.2f}",
                f"{r['labelled']} ({_pct(r['labelled_share'])})",
                _pct(r["precision"]),
                str(r["false_alarm"]),
                str(r["expected"]),
                str(r["new_normal"]),
                str(r["missed"]),
                _dur(r["mtta_seconds"]),
                _pct(r["ack_within_sla"]),
                _dur(r["mttr_seconds"]),
                _pct(r["resolve_within_sla"]),
            )
        console.print(table)
        if not q["rows"]:
            console.print("no alerts, incidents or labels in the window")
