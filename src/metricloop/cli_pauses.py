"""`metricloop monitors pause | resume | pauses`: what the console's monitor screen does, from a terminal."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

console = Console()


def register(monitors_app: typer.Typer) -> None:
    from metricloop import cli

    def _known(ws, name: str) -> None:
        from metricloop.errors import NotFound

        if name not in ws.catalog().all("monitor"):
            raise NotFound(f"no monitor named '{name}'", where="monitor")

    def _set(name: str, paused: bool, reason: str, actor: str | None) -> None:
        from metricloop.monitors.pauses import set_paused

        ws = cli.open_ws()
        _known(ws, name)
        with ws.db.session() as s:
            set_paused(s, monitor=name, paused=paused, actor=actor or cli.settings().author, reason=reason)
        state = "paused: the scheduler skips it until resumed" if paused else "resumed: it runs on its schedule"
        console.print(f"[green]✓[/] monitor {esc(name)} {state}")

    @monitors_app.command("pause")
    def monitors_pause(
        name: str,
        reason: Annotated[str, typer.Option(help="why (kept with the pause)")] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Pause a monitor: no scheduled run until it is resumed (recorded with who, when and why)."""
        _set(name, True, reason, actor)

    @monitors_app.command("resume")
    def monitors_resume(
        name: str,
        reason: Annotated[str, typer.Option()] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Resume a paused monitor."""
        _set(name, False, reason, actor)

    @monitors_app.command("pauses")
    def monitors_pauses(name: str) -> None:
        """A monitor's pauses and resumes, newest first."""
        from metricloop.monitors.pauses import history

        ws = cli.open_ws()
        _known(ws, name)
        table = Table()
        for c in ("at (UTC)", "action", "by", "reason"):
            table.add_column(c)
        with ws.db.session() as s:
            for p in history(s, name):
                table.add_row(f"{p.at:%Y-%m-%d %H:%M}", p.action, esc(p.actor), esc(p.reason))
        console.print(table)
