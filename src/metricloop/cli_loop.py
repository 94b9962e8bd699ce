"""CLI for the loop: run monitors, work incidents, silence, test routes, manage API tokens."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from metricloop.cli_text import Table, Text, esc
from metricloop.definitions.durations import parse_duration
from metricloop.errors import MetricloopError

STATE_COLOURS = {"triggered": "red", "acknowledged": "yellow", "resolved": "green", "reviewed": "blue"}
SEVERITY_STYLE = {"P1": "bold white on red", "P2": "bold black on dark_orange", "P3": "black on yellow"}


def _parse_at(at: str | None) -> datetime | None:
    if not at:
        return None
    import pandas as pd

    try:
        ts = pd.Timestamp(at)
    except ValueError:
        raise MetricloopError(f"'{at}' is not a time (use e.g. 2026-11-16T09:00+08:00)", where="--at") from None
    if ts.tzinfo is None:
        raise MetricloopError(f"give --at with its offset, e.g. {at}+08:00 (or Z for UTC)", where="--at")
    return ts.to_pydatetime()


def register(app: typer.Typer) -> None:
    from metricloop import cli

    console = cli.console
    incidents_app = typer.Typer(
        help="Incidents (工单): list, show, acknowledge, assign, comment, resolve.", no_args_is_help=True
    )
    monitors_app = typer.Typer(help="Monitors and their runs.", no_args_is_help=True)
    silences_app = typer.Typer(help="Silences: mute alerts by labels until they expire.", no_args_is_help=True)
    routes_app = typer.Typer(help="Routes: who gets which alert.", no_args_is_help=True)
    tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
    app.add_typer(incidents_app, name="incidents")
    app.add_typer(monitors_app, name="monitors")
    from metricloop.cli_pauses import register as register_pauses

    register_pauses(monitors_app)  # pause | resume | pauses
    app.add_typer(silences_app, name="silences")
    app.add_typer(routes_app, name="routes")
    app.add_typer(tokens_app, name="tokens")

    @app.command("run")
    def run(
        monitor: Annotated[str | None, typer.Option(help="Run only this monitor.")] = None,
        at: Annotated[
            str | None, typer.Option(help="Pretend it is this time (with offset), e.g. 2026-11-16T09:00+08:00.")
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Run MONITOR even if its slot has a run.")] = False,
        notify: Annotated[
            bool,
            typer.Option(
                "--notify", help="With --force and an --at in the past: alert and notify as of then (else a backtest)."
            ),
        ] = False,
        dispatch: Annotated[
            bool, typer.Option("--dispatch/--no-dispatch", help="Also send queued notifications.")
        ] = True,
    ) -> None:
        """Run due monitors once, fire due timers and send the outbox: for cron or an orchestrator."""
        from metricloop.incidents.service import process_timers
        from metricloop.monitors.service import check_clock, manual_run, run_due

        ws = cli.open_ws()
        when = _parse_at(at)
        if force:
            if not monitor:
                raise MetricloopError("--force needs --monitor", where="--force")
            runs = [manual_run(ws, monitor, at=when, notify=notify, where="--at")]
        else:
            if when is not None:
                check_clock(ws, when, only=monitor, where="--at")
            runs = run_due(ws, now=when, only=monitor)
        _print_runs(console, runs)
        for r in runs:
            if r.status == "skipped":
                console.print(f"run #{r.id} skipped: {(r.details or {}).get('skipped', '')}")
            elif r.trigger == "backtest":
                console.print(
                    f"run #{r.id} is a backtest (--at is in the past): {r.anomalies} points would have been "
                    "flagged; nothing was sent and no incident opened (add --notify to alert as of then)"
                )
        if not runs:
            console.print("no monitor was due" + (f" (use --force to run {esc(monitor)} again)" if monitor else ""))
        fired = process_timers(ws, now=when)
        if fired["escalated"] or fired["sla_breached"]:
            console.print(f"timers: {fired['escalated']} escalations, {fired['sla_breached']} SLA breaches")
        if dispatch:
            from metricloop.notify.dispatcher import dispatch_once

            stats = dispatch_once(ws)
            if stats.claimed:
                console.print(f"outbox: {stats.sent} sent, {stats.retried} to retry, {stats.dead} dead")
        if any(r.status == "failed" for r in runs):
            raise typer.Exit(1)

    def _print_runs(console, runs) -> None:
        if not runs:
            return
        table = Table(title="runs")
        for c in ("id", "monitor", "trigger", "data until", "status", "series", "anomalies", "incidents", "error"):
            table.add_column(c)
        for r in runs:
            colour = {"ok": "green", "failed": "red"}.get(r.status, "yellow")
            opened = ", ".join(f"#{i}" for i in (r.details or {}).get("incidents", []))
            table.add_row(
                str(r.id),
                r.monitor,
                r.trigger,
                f"{r.data_until:%Y-%m-%d %H:%M}" if r.data_until else "",
                Text(r.status, style=colour),
                str(r.series_evaluated),
                str(r.anomalies),
                opened,
                (r.error or "").splitlines()[0][:80] if r.error else (r.details or {}).get("skipped", "")[:80],
            )
        console.print(table)

    @monitors_app.command("list")
    def monitors_list() -> None:
        """Monitors with their metric, slices, detector and schedule."""
        ws = cli.open_ws()
        table = Table()
        for c in ("name", "metric", "slices", "detector", "schedule", "enabled"):
            table.add_column(c)
        for m in sorted(ws.catalog().all("monitor").values(), key=lambda m: m.name):
            sched = m.schedule.cron or f"every {m.schedule.every}"
            table.add_row(
                m.name,
                m.metric,
                ", ".join(m.slicing.dimensions) or "total",
                str(m.detector.get("detector", "auto")),
                sched,
                "yes" if m.enabled else "no",
            )
        console.print(table)

    @monitors_app.command("runs")
    def monitors_runs(
        monitor: Annotated[str | None, typer.Option()] = None,
        limit: Annotated[int, typer.Option()] = 20,
    ) -> None:
        """Recent runs: start, status, series evaluated, anomalies, errors."""
        from sqlalchemy import select

        from metricloop.monitors.models import MonitorRun

        ws = cli.open_ws()
        with ws.db.session() as s:
            q = select(MonitorRun).order_by(MonitorRun.id.desc()).limit(limit)
            if monitor:
                q = q.where(MonitorRun.monitor == monitor)
            runs = list(s.scalars(q))
        _print_runs(console, runs)

    # ------------------------------------------------------------------ incidents

    @incidents_app.command("list")
    def incidents_list(
        state: Annotated[
            str | None, typer.Option(help="triggered, acknowledged, resolved, reviewed (comma-separated)")
        ] = None,
        severity: Annotated[str | None, typer.Option()] = None,
        assignee: Annotated[str | None, typer.Option()] = None,
        metric: Annotated[str | None, typer.Option()] = None,
        limit: Annotated[int, typer.Option()] = 50,
        fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    ) -> None:
        """Incidents, newest first."""
        from metricloop.incidents.views import incident_dict, list_incidents

        ws = cli.open_ws()
        with ws.db.session() as s:
            rows = [
                incident_dict(r)
                for r in list_incidents(
                    s, state=state, severity=severity, assignee=assignee, metric=metric, limit=limit
                )
            ]
        if fmt == "json":
            sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
            return
        table = Table()
        for c in ("#", "sev", "state", "title", "assignee", "opened (UTC)", "SLA"):
            table.add_column(c)
        for r in rows:
            sla = "ack breached" if r["ack_breached"] else ("resolve breached" if r["resolve_breached"] else "")
            table.add_row(
                str(r["id"]),
                Text(f" {r['severity']} ", style=SEVERITY_STYLE[r["severity"]]),
                Text(r["state"], style=STATE_COLOURS.get(r["state"], "white")),
                r["title"],
                r["assignee"],
                r["created_at"][:16].replace("T", " "),
                Text(sla, style="red"),
            )
        console.print(table)

    @incidents_app.command("show")
    def incidents_show(incident_id: int, fmt: Annotated[str, typer.Option("--format")] = "text") -> None:
        """One incident: summary, slices, owner and the whole timeline."""
        from metricloop.incidents import service
        from metricloop.incidents.views import incident_detail
        from metricloop.knowledge.views import knowledge_detail

        ws = cli.open_ws()
        with ws.db.session() as s:
            inc = service.get(s, incident_id)
            d = incident_detail(s, inc) | knowledge_detail(s, ws, inc)
        if fmt == "json":
            sys.stdout.write(json.dumps(d, ensure_ascii=False, indent=2) + "\n")
            return
        console.print(
            f"[{SEVERITY_STYLE[d['severity']]}] {d['severity']} [/] [bold]#{d['id']} {esc(d['title'])}[/]  "
            f"[{STATE_COLOURS.get(d['state'], 'white')}]{d['state']}[/]"
        )
        summary = d["summary"]
        for key in ("explanation_zh", "explanation_en"):
            if summary.get(key):
                console.print(f"  {esc(summary[key])}")
        console.print(
            f"  owner: [bold]{esc(d['assignee'] or 'nobody')}[/] ({esc(d['team'] or 'no team')}), "
            f"route {esc(d['route'] or '-')}, "
            f"escalation {esc(d['escalation_policy'] or '-')}"
        )
        console.print(f"  slices: {esc(', '.join(d['slices']))}")
        if d["root_cause"]:
            console.print(f"  root cause: {esc(d['root_cause'])}")
        lang = "zh" if ws.config.get("language", "zh") == "zh" else "en"
        for m in d["similar"]:  # what was done last time (the knowledge base)
            console.print(f"  {esc(m['summary_' + lang])}  [dim](#{m['incident_id']}, {m['score']:.2f})[/]")
        from metricloop.rca.panel import print_rca

        print_rca(console, d.get("rca") or {})
        table = Table(title="timeline")
        for c in ("time (UTC)", "event", "actor", "message"):
            table.add_column(c)
        for e in d["timeline"]:
            table.add_row(e["at"][:19].replace("T", " "), e["kind"], e["actor"], e["message"])
        console.print(table)
        if d["notifications"]:
            table = Table(title="notifications")
            for c in ("id", "channel", "recipient", "event", "status", "attempts"):
                table.add_column(c)
            for n in d["notifications"]:
                table.add_row(str(n["id"]), n["channel"], n["recipient"], n["event"], n["status"], str(n["attempts"]))
            console.print(table)

    def _flow(step):
        """Run one incident flow in a unit of work: step(session, ws) -> Incident."""
        ws = cli.open_ws()
        with ws.db.session() as s:
            inc = step(s, ws)
            owner = f", owner {esc(inc.assignee)}" if inc.assignee else ""
            console.print(f"[green]✓[/] incident #{inc.id} is {inc.state}{owner}")

    @incidents_app.command("ack")
    def incidents_ack(incident_id: int, actor: Annotated[str | None, typer.Option("--as")] = None) -> None:
        """Acknowledge: "I'm on it". Escalation stops at once."""
        from metricloop.incidents.service import acknowledge

        _flow(
            lambda s, ws: acknowledge(
                s, ws, ws.catalog(), incident_id=incident_id, actor=actor or cli.settings().author
            )
        )

    @incidents_app.command("assign")
    def incidents_assign(
        incident_id: int,
        assignee: str,
        team: Annotated[str | None, typer.Option()] = None,
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Hand the incident to someone else."""
        from metricloop.incidents.service import assign

        _flow(
            lambda s, ws: assign(
                s,
                ws,
                ws.catalog(),
                incident_id=incident_id,
                assignee=assignee,
                team=team,
                actor=actor or cli.settings().author,
            )
        )

    @incidents_app.command("comment")
    def incidents_comment(
        incident_id: int, text: str, actor: Annotated[str | None, typer.Option("--as")] = None
    ) -> None:
        """Add a note to the timeline."""
        from metricloop.incidents.service import comment

        _flow(lambda s, ws: comment(s, incident_id=incident_id, text=text, actor=actor or cli.settings().author))

    @incidents_app.command("resolve")
    def incidents_resolve(
        incident_id: int,
        root_cause: Annotated[str, typer.Option(help="What caused it.")],
        note: Annotated[str, typer.Option(help="What was done.")] = "",
        category: Annotated[
            str | None, typer.Option(help="Root-cause category (`metricloop knowledge categories`); default: read "
                                          "from the root cause's words, else other.")
        ] = None,
        actions: Annotated[str, typer.Option(help="The actions that worked (default: the note).")] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Resolve with a root cause, its category, the actions that worked and a note (kept in the knowledge
        base)."""
        from metricloop.incidents.service import resolve

        _flow(
            lambda s, ws: resolve(
                s,
                ws,
                ws.catalog(),
                incident_id=incident_id,
                root_cause=root_cause,
                note=note,
                category=category,
                actions=actions,
                actor=actor or cli.settings().author,
            )
        )

    @incidents_app.command("reopen")
    def incidents_reopen(
        incident_id: int,
        reason: Annotated[str, typer.Option()] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Reopen a resolved incident (escalation starts again)."""
        from metricloop.incidents.service import reopen

        _flow(
            lambda s, ws: reopen(
                s, ws, ws.catalog(), incident_id=incident_id, reason=reason, actor=actor or cli.settings().author
            )
        )

    @incidents_app.command("review")
    def incidents_review(
        incident_id: int,
        note: Annotated[str, typer.Option()] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Mark a resolved incident as reviewed (复盘)."""
        from metricloop.incidents.service import review

        _flow(lambda s, ws: review(s, incident_id=incident_id, note=note, actor=actor or cli.settings().author))

    @incidents_app.command("kpis")
    def incidents_kpis() -> None:
        """MTTA, MTTR, counts by state and SLA breaches."""
        from metricloop.incidents.service import kpis

        ws = cli.open_ws()
        with ws.db.session() as s:
            k = kpis(s)

        def fmt(x):
            return "-" if x is None else str(timedelta(seconds=int(x)))

        console.print(f"incidents {k['incidents']}  by state {k['by_state']}")
        console.print(
            f"MTTA {fmt(k['mtta_seconds'])}  MTTR {fmt(k['mttr_seconds'])}  "
            f"ack breaches {k['ack_breaches']}  resolve breaches {k['resolve_breaches']}"
        )

    # ------------------------------------------------------------------ silences, routes, tokens

    @silences_app.command("add")
    def silences_add(
        matchers: Annotated[list[str], typer.Argument(help="label=value, label!=value, label=~regex …")],
        reason: Annotated[str, typer.Option(help="Why (required).")],
        duration: Annotated[str, typer.Option(help="How long, e.g. 2h, 1d.")] = "2h",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Mute alerts whose labels match, for a while."""
        from metricloop.alerting.silences import create

        ws = cli.open_ws()
        try:
            length = parse_duration(duration)
        except ValueError as e:
            raise MetricloopError(str(e), where="--duration") from None
        with ws.db.session() as s:
            row = create(
                s, matchers=matchers, reason=reason, created_by=actor or cli.settings().author, duration=length
            )
            console.print(
                f"[green]✓[/] silence #{row.id} until {row.ends_at:%Y-%m-%d %H:%M} UTC: {esc(', '.join(matchers))}"
            )

    @silences_app.command("list")
    def silences_list(all_: Annotated[bool, typer.Option("--all", help="Include expired ones.")] = False) -> None:
        """Silences (active ones by default)."""
        from metricloop.alerting.silences import list_silences

        ws = cli.open_ws()
        with ws.db.session() as s:
            rows = list_silences(s, active_only=not all_)
        table = Table()
        for c in ("#", "matchers", "until (UTC)", "reason", "by"):
            table.add_column(c)
        for r in rows:
            table.add_row(str(r.id), ", ".join(r.matchers), f"{r.ends_at:%Y-%m-%d %H:%M}", r.reason, r.created_by)
        console.print(table)

    @silences_app.command("expire")
    def silences_expire(silence_id: int) -> None:
        """End a silence now."""
        from metricloop.alerting.silences import expire

        ws = cli.open_ws()
        with ws.db.session() as s:
            expire(s, silence_id=silence_id)
        console.print(f"[green]✓[/] silence #{silence_id} expired")

    @routes_app.command("test")
    def routes_test(
        labels: Annotated[str, typer.Option(help="k=v,k=v, e.g. monitor=store_sales,store=SH-003")],
    ) -> None:
        """Show who would get an alert with these labels, on which channels, and why."""
        from metricloop.routing.service import resolve_route

        pairs = {}
        for part in labels.split(","):
            if "=" not in part:
                raise MetricloopError(f"'{part}' is not k=v", where="--labels")
            k, v = part.split("=", 1)
            pairs[k.strip()] = v.strip()
        ws = cli.open_ws()
        d = resolve_route(ws, ws.catalog(), pairs, at=datetime.now(UTC))
        team = f"  (team {esc(d.team)})" if d.team else ""
        console.print(f"assignee:   [bold]{esc(d.assignee or 'nobody')}[/]{team}")
        console.print(f"channels:   {esc(', '.join(d.channels) or 'none')}")
        console.print(f"escalation: {esc(d.escalation or 'none')}")
        for r in d.reasons:
            console.print(f"  · {esc(r)}")

    @tokens_app.command("create")
    def tokens_create(
        name: str,
        role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "operator",
        user: Annotated[str | None, typer.Option(help="Who acts with it (default: NAME).")] = None,
    ) -> None:
        """Create an API token. It is shown once."""
        from metricloop.auth.service import create_token

        ws = cli.open_ws()
        with ws.db.session() as s:
            token = create_token(s, name=name, role=role, user=user or name)
        console.print(f"[green]✓[/] token '{esc(name)}' ({esc(role)}); keep it safe, it is not shown again:")
        sys.stdout.write(token + "\n")

    @tokens_app.command("list")
    def tokens_list() -> None:
        """Tokens (never their values)."""
        from metricloop.auth.service import list_tokens

        ws = cli.open_ws()
        with ws.db.session() as s:
            rows = list_tokens(s)
        table = Table()
        for c in ("name", "role", "user", "created", "last used", "revoked"):
            table.add_column(c)
        for r in rows:
            table.add_row(
                r.name,
                r.role,
                r.user,
                f"{r.created_at:%Y-%m-%d}",
                f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "",
                f"{r.revoked_at:%Y-%m-%d}" if r.revoked_at else "",
            )
        console.print(table)

    @tokens_app.command("revoke")
    def tokens_revoke(name: str) -> None:
        """Revoke a token."""
        from metricloop.auth.service import revoke

        ws = cli.open_ws()
        with ws.db.session() as s:
            revoke(s, name=name)
        console.print(f"[green]✓[/] token '{esc(name)}' revoked")
