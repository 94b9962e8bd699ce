"""`metricloop report weekly`: the weekly review (周报 / 复盘) of a team or a domain, as text, JSON or HTML."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from metricloop.errors import MetricloopError

FORMATS = ("text", "json", "html")


def register(app: typer.Typer) -> None:
    from metricloop import cli

    report_app = typer.Typer(help="Reports: the weekly review (周报).", no_args_is_help=True)
    app.add_typer(report_app, name="report")

    @report_app.command("weekly")
    def weekly(
        team: Annotated[str | None, typer.Option(help="The team (as routes name it), e.g. logistics.")] = None,
        domain: Annotated[str | None, typer.Option(help="The metric domain, e.g. fulfilment.")] = None,
        week: Annotated[
            str | None, typer.Option(help="ISO week, e.g. 2026-W48 (default: the last full week, workspace time).")
        ] = None,
        lang: Annotated[str | None, typer.Option(help="zh or en (default: the workspace's language).")] = None,
        format: Annotated[str, typer.Option("--format", "-f", help="text, json or html.")] = "text",
        at: Annotated[
            str | None, typer.Option(help="Pretend it is this time (with offset), e.g. 2026-11-30T09:00+08:00.")
        ] = None,
    ) -> None:
        """Incidents opened and resolved, MTTA/MTTR against SLA and breaches, false alarms and their trend, top root
        causes, open tuning suggestions and the monitors to look at, for one week."""
        from metricloop.cli_loop import _parse_at
        from metricloop.review import render
        from metricloop.review.report import build

        if format not in FORMATS:
            raise MetricloopError(f"--format must be one of {', '.join(FORMATS)}, not '{format}'", where="--format")
        ws = cli.open_ws()
        language = lang or ws.config.get("language", "zh")
        if language not in render.WORDS:
            raise MetricloopError(f"--lang must be zh or en, not '{lang}'", where="--lang")
        now: datetime | None = _parse_at(at)
        tz = ws.config.get("timezone") or "Asia/Shanghai"
        with ws.db.session() as s:
            try:
                report = build(s, ws.catalog(), tz=tz, week=week, team=team, domain=domain, lang=language, now=now)
            except MetricloopError as e:
                where = {"week": "--week", "team": "--team", "domain": "--domain"}.get(e.where or "", e.where)
                text = e.text(language) if hasattr(e, "text") else e.message
                raise MetricloopError(text, where=where) from None
        if format == "json":
            typer.echo(render.as_json(report))
        elif format == "html":
            typer.echo(render.standalone_html(report, language), nl=False)
        else:
            url = render.report_url(ws.settings.base_url, report, language) if ws.settings.base_url else ""
            typer.echo(render.text(report, language, url=url), nl=False)
