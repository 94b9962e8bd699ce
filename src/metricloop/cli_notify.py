"""`metricloop outbox …`: see, retry and dispatch notifications and actions."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from metricloop.cli_text import esc


def _cli():
    from metricloop import cli

    return cli


outbox_app = typer.Typer(
    help="Notifications and action calls waiting, sent or dead-lettered: list, show, retry, dispatch, approve.",
    no_args_is_help=True,
)

StatusOpt = Annotated[
    str | None,
    typer.Option(
        "--status",
        help="awaiting_approval, pending, sending, sent, dead, rejected or cancelled.",
    ),
]


@outbox_app.command("list")
def outbox_list(
    status: StatusOpt = None,
    incident: Annotated[int | None, typer.Option("--incident", help="Only this incident's rows.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, newest first.")] = 50,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List outbox rows, newest first, with a count per status."""
    from metricloop.cli_text import Table, Text
    from metricloop.notify.outbox import counts, list_notifications, to_dict

    cli = _cli()
    ws = cli.open_ws()
    with ws.db.session() as s:
        rows = [to_dict(r) for r in list_notifications(s, status=status, incident_id=incident, limit=limit)]
        totals = counts(s)
    if fmt == "json":
        cli.console.print_json(json.dumps({"counts": totals, "rows": rows}, ensure_ascii=False))
        return
    table = Table("id", "status", "kind", "incident", "event", "channel", "recipient", "attempts", "next / sent",
                  "last error")  # fmt: skip
    colour = {"sent": "green", "dead": "red", "pending": "yellow", "sending": "cyan", "awaiting_approval": "magenta"}
    for r in rows:
        when = r["sent_at"] if r["status"] == "sent" else r["next_attempt_at"]
        table.add_row(
            str(r["id"]),
            Text(r["status"], style=colour.get(r["status"], "white")),
            r["kind"],
            str(r["incident_id"] or ""),
            r["event"],
            r["channel"],
            r["recipient"],
            f"{r['attempts']}/{r['max_attempts']}",
            (when or "")[:19],
            (r["last_error"] or "")[:80],
        )
    if rows:
        cli.console.print(table)
    else:
        cli.console.print("no outbox rows match")
    cli.console.print("whole outbox: " + (", ".join(f"{k} {v}" for k, v in totals.items() if v) or "empty"))


@outbox_app.command("show")
def outbox_show(notification_id: Annotated[int, typer.Argument(metavar="ID", help="Outbox row id.")]) -> None:
    """One row in full: subject, body, payload, attempts and the last error."""
    from metricloop.notify.outbox import get, to_dict

    cli = _cli()
    ws = cli.open_ws()
    with ws.db.session() as s:
        row = to_dict(get(s, notification_id), full=True)
    cli.console.print_json(json.dumps(row, ensure_ascii=False, default=str))


@outbox_app.command("retry")
def outbox_retry(notification_id: Annotated[int, typer.Argument(metavar="ID", help="A dead outbox row.")]) -> None:
    """Send a dead-lettered row again (dead → pending, attempts start over)."""
    from metricloop.notify.outbox import retry

    cli = _cli()
    ws = cli.open_ws()
    with ws.db.session() as s:
        row = retry(s, notification_id=notification_id, actor=ws.settings.author)
        cli.console.print(f"[green]✓[/] outbox #{row.id} is pending again ({esc(row.channel)} → {esc(row.recipient)})")


@outbox_app.command("dispatch")
def outbox_dispatch(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron).")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes when idle.")] = 2.0,
    batch: Annotated[int, typer.Option(help="Rows claimed per pass.")] = 100,
) -> None:
    """Deliver due rows: one pass with --once, else until interrupted. `metricloop serve` also does this."""
    import threading

    from metricloop.notify.dispatcher import dispatch_once, run_dispatcher

    cli = _cli()
    ws = cli.open_ws()
    if once:
        st = dispatch_once(ws, batch=batch)
        cli.console.print(f"claimed {st.claimed}: sent {st.sent}, retrying {st.retried}, dead {st.dead}")
        if st.dead:
            raise typer.Exit(1)
        return
    stop = threading.Event()
    cli.console.print(f"dispatching from {esc(ws.settings.db_url)} every {interval:g}s (Ctrl-C to stop)")
    try:
        total = run_dispatcher(ws, stop, interval=interval, batch=batch)
    except KeyboardInterrupt:
        stop.set()
        return
    cli.console.print(f"sent {total.sent}, retried {total.retried}, dead {total.dead}")


@outbox_app.command("approve")
def outbox_approve(notification_id: Annotated[int, typer.Argument(metavar="ID", help="An action row.")]) -> None:
    """Approve an action that waits for approval; it is then delivered."""
    from metricloop.notify.actions import approve_action

    cli = _cli()
    ws = cli.open_ws()
    with ws.db.session() as s:
        row = approve_action(s, notification_id=notification_id, actor=ws.settings.author)
        cli.console.print(f"[green]✓[/] action {esc(row.channel.removeprefix('action:'))} (#{row.id}) approved")


@outbox_app.command("reject")
def outbox_reject(
    notification_id: Annotated[int, typer.Argument(metavar="ID", help="An action row.")],
    reason: Annotated[str, typer.Option(help="Why (on the incident timeline).")] = "",
) -> None:
    """Reject an action that waits for approval; it is never sent."""
    from metricloop.limits import check_text
    from metricloop.notify.actions import reject_action

    check_text(reason, "reason")
    cli = _cli()
    ws = cli.open_ws()
    with ws.db.session() as s:
        row = reject_action(s, notification_id=notification_id, actor=ws.settings.author, reason=reason)
        cli.console.print(f"action {esc(row.channel.removeprefix('action:'))} (#{row.id}) rejected")


def register(app: typer.Typer) -> None:
    app.add_typer(outbox_app, name="outbox")
