"""The `metricloop` command. It builds the same objects the server uses."""

from __future__ import annotations

import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metricloop.cli_text import Table, Text, esc
from metricloop.errors import MetricloopError
from metricloop.settings import Settings

console = Console()
err_console = Console(stderr=True)
PAGE_WIDTH = 160


def _fit(c: Console, stream) -> None:
    """On a terminal Rich follows it. In logs and pipes (CI, `| less`, test runners) Rich would settle on 80
    columns, or on COLUMNS as it was when the console was made; use a wide page instead, or COLUMNS now."""
    import os

    if stream.isatty():
        return
    columns = os.environ.get("COLUMNS", "")
    wanted = max(PAGE_WIDTH, int(columns) if columns.isdigit() else 0)
    c.width = max(wanted, c._width or 0)


class _Group(typer.core.TyperGroup):
    """Print user errors (MetricloopError) as one clear line and exit 2, for every command."""

    def invoke(self, ctx):
        _fit(console, sys.stdout)
        _fit(err_console, sys.stderr)
        try:
            return super().invoke(ctx)
        except MetricloopError as e:
            err_console.print(f"[bold red]error:[/] {esc(e)}", highlight=False, soft_wrap=True)
            ctx.exit(2)


app = typer.Typer(
    name="metricloop",
    cls=_Group,
    help="Close the loop on business metrics: governed metrics, detection, incidents, feedback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sources_app = typer.Typer(help="Connections to data: list and test them.", no_args_is_help=True)
metrics_app = typer.Typer(help="Governed metric definitions: list, show, query, slice, check.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(metrics_app, name="metrics")


class State:
    home: Path = Path(".")


state = State()

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="METRICLOOP_HOME", help="Workspace folder (default: current folder)."),
]


@app.callback()
def _root(workspace: WorkspaceOpt = None) -> None:
    state.home = workspace or Path(".")


def settings() -> Settings:
    return Settings(home=state.home)


def open_ws():
    from metricloop.workspace import Workspace

    return Workspace.open(state.home, settings())


def _checks(ws, no_check: bool):
    from metricloop.metrics.validate import column_check, reference_check
    from metricloop.monitors.validate import loop_check

    return [reference_check, loop_check] if no_check else [reference_check, loop_check, column_check(ws)]


# ------------------------------------------------------------------ workspace


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


def init_workspace(directory: Path, *, demo: bool, scale: float, seed: int, end: str | None, into: str | None):
    from metricloop.workspace import Workspace

    ws = Workspace.init(directory, Settings(home=directory))
    console.print(f"[green]✓[/] workspace at {esc(ws.home)} (state: {esc(ws.settings.db_url)})")
    if demo:
        from metricloop.demo.setup import install_demo

        with _progress() as progress:
            tasks = {"data": progress.add_task("generating demo data", total=1.0)}

            def report(stage: str, fraction: float) -> None:
                if stage.startswith("replaying") and "replay" not in tasks:
                    progress.update(tasks["data"], completed=1.0, description="demo data ready")
                    tasks["replay"] = progress.add_task("replaying the last 7 mornings", total=1.0)
                task = tasks.get("replay", tasks["data"])
                progress.update(task, description=stage, completed=fraction)

            summary = install_demo(ws, scale=scale, seed=seed, end=end, into=into, progress=report)
            for task in tasks.values():
                progress.update(task, completed=1.0)
        rows = ", ".join(f"{k} {v:,}" for k, v in summary.get("rows", {}).items())
        console.print(f"[green]✓[/] demo data: {esc(rows)}")
        result = summary["apply"]
        console.print(f"[green]✓[/] applied {result.changed} definitions from {esc(ws.defs_dir)}")
        if summary.get("replay"):
            from metricloop.demo.setup import replay_report

            console.print(f"[green]✓[/] {esc(replay_report(summary))}")
        if summary.get("token_file"):
            console.print(f"[green]✓[/] API token (operator) in {esc(summary['token_file'])}: "
                          "send it as 'Authorization: Bearer <token>'")
        for name, role, password in summary.get("users", []):
            console.print(f"[green]✓[/] console user [bold]{name}[/] ({role}), password {password}", highlight=False)
    return ws


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    demo: Annotated[bool, typer.Option("--demo", help="Also generate the demo data set and its definitions.")] = False,
    scale: Annotated[float, typer.Option(help="Demo size: 1.0 ≈ 10M order rows; 0.01 for a quick test.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed of the demo data (same seed, same data).")] = 42,
    end: Annotated[str | None, typer.Option(help="Last day of demo data (default: yesterday).")] = None,
    into: Annotated[str | None, typer.Option(help="Also load demo data into this SQLAlchemy URL and use it.")] = None,
) -> None:
    """Create a workspace: config, defs/, data/ and the state database."""
    init_workspace(directory, demo=demo, scale=scale, seed=seed, end=end, into=into)


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Workspace folder for the demo.")] = Path("demo-workspace"),
    scale: Annotated[float, typer.Option(help="Demo size: 1.0 ≈ 10M order rows.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed of the demo data.")] = 42,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    serve_: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve after setting up.")] = True,
) -> None:
    """Init + demo data + apply + serve, in one step. Re-running reuses an existing demo workspace."""
    from metricloop.settings import WORKSPACE_FILE

    if (directory / WORKSPACE_FILE).exists() and (directory / "data" / "labels.csv").exists():
        console.print(f"[green]✓[/] reusing the demo workspace at {esc(directory.resolve())}")
    else:
        init_workspace(directory, demo=True, scale=scale, seed=seed, end=None, into=None)
    state.home = directory
    if serve_:
        serve(host=host, port=port)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="METRICLOOP_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="METRICLOOP_PORT", help="Port to bind.")] = 8000,
) -> None:
    """Serve the API (OpenAPI at /docs) and run the scheduler, timers and the outbox dispatcher."""
    import os

    import uvicorn

    from metricloop.app import create_app

    # What this process serves on, for everything in it that asks: the default base URL (links in messages) and
    # ${METRICLOOP_ADDRESS} (the demo's channels, which deliver to this server's own inbox) follow --port.
    os.environ["METRICLOOP_HOST"], os.environ["METRICLOOP_PORT"] = host, str(port)
    ws = open_ws()
    console.print(f"serving workspace [bold]{esc(ws.home)}[/] at [link]http://{host}:{port}[/]  (API docs: /docs)")
    uvicorn.run(create_app(ws, background=True), host=host, port=port, log_level="info")


# ------------------------------------------------------------------ definitions


@app.command()
def apply(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or folders of them.")],
    no_check: Annotated[bool, typer.Option("--no-check", help="Do not open sources to check columns.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show what would change.")] = False,
    author: Annotated[str | None, typer.Option(help="Recorded as the author of the change.")] = None,
) -> None:
    """Validate and upsert definitions. All or nothing: one bad entry changes nothing."""
    from metricloop.definitions import service

    ws = open_ws()
    entries, problems = service.read_definitions(paths)
    with ws.db.session() as s:
        result = service.apply(
            s,
            entries=entries,
            problems=problems,
            author=author or ws.settings.author,
            checks=_checks(ws, no_check),
            dry_run=dry_run,
        )
    verb = "would be " if dry_run else ""
    for kind, name, version in result.created:
        console.print(f"[green]+[/] {kind} {esc(name)} {verb}created (v{version})")
    for kind, name, version in result.updated:
        console.print(f"[yellow]~[/] {kind} {esc(name)} {verb}updated (v{version})")
    console.print(
        f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged"
        + (" (dry run: nothing written)" if dry_run else "")
    )


@app.command()
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: standard output).")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")] = None,
) -> None:
    """Write the definitions out as YAML (secrets stay as ${ENV_VAR} references)."""
    from metricloop.definitions import service

    ws = open_ws()
    with ws.db.session() as s:
        text = service.dump_yaml(service.export(s, kind))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"[green]✓[/] wrote {esc(out)}")


@app.command()
def history(
    kind: Annotated[str, typer.Argument(help="source, metric, …")],
    name: Annotated[str, typer.Argument()],
    diff: Annotated[bool, typer.Option("--diff", help="Show each version's diff.")] = False,
) -> None:
    """List the versions of a definition: who changed it, when and how."""
    from metricloop.definitions import service

    ws = open_ws()
    with ws.db.session() as s:
        rows = service.history(s, kind=kind, name=name)
    table = Table(title=f"{kind} {name}")
    for c in ("version", "change", "author", "time (UTC)", "comment"):
        table.add_column(c)
    for r in rows:
        when = r.created_at.replace(tzinfo=UTC) if r.created_at.tzinfo is None else r.created_at.astimezone(UTC)
        table.add_row(str(r.version), r.change, r.author, f"{when:%Y-%m-%d %H:%M:%S}", r.comment)
    console.print(table)
    if diff:
        for r in rows:
            console.rule(f"v{r.version}")
            console.print(r.diff or "(no change)", markup=False, highlight=False)


@app.command()
def rollback(
    kind: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(help="The version to restore.")],
    author: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Restore an earlier version (recorded as a new version)."""
    from metricloop.definitions import service

    ws = open_ws()
    with ws.db.session() as s:
        new = service.rollback(
            s, kind=kind, name=name, version=version, author=author or ws.settings.author, checks=_checks(ws, False)
        )
    if new is None:
        console.print(f"{esc(kind)} {esc(name)} already equals version {version}; nothing to do")
    else:
        console.print(f"[green]✓[/] {esc(kind)} {esc(name)} is now v{new} (restored from v{version})")


# ------------------------------------------------------------------ sources


@sources_app.command("list")
def sources_list() -> None:
    """List sources."""
    ws = open_ws()
    table = Table()
    for c in ("name", "type", "where", "owner"):
        table.add_column(c)
    for s in ws.catalog().sources.values():
        where = s.url if s.type == "sql" else (s.path or ", ".join(s.tables))
        table.add_row(s.name, s.type, where, s.owner or "")
    console.print(table)


@sources_app.command("test")
def sources_test(name: Annotated[str, typer.Argument()]) -> None:
    """Connect to a source and list its tables; a clear error if it is unreachable or misconfigured."""
    ws = open_ws()
    tables = ws.source(name).test()
    console.print(f"[green]✓[/] source {esc(name)} is reachable; tables: {esc(', '.join(tables) or '(none)')}")


# ------------------------------------------------------------------ metrics


def _split(values: list[str] | None) -> list[str]:
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()]


@metrics_app.command("list")
def metrics_list(
    domain: Annotated[str | None, typer.Option(help="Only this domain.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List metrics with owner, domain and tier."""
    ws = open_ws()
    if fmt not in ("table", "json"):
        raise MetricloopError(f"--format must be table or json, not '{fmt}'", where="--format")
    metrics = [m for m in ws.catalog().metrics.values() if not domain or m.domain == domain]
    if fmt == "json":
        sys.stdout.write(json.dumps([m.normalized() for m in metrics], ensure_ascii=False, indent=2) + "\n")
        return
    table = Table()
    for c in ("name", "title", "domain", "tier", "owner", "grain", "unit", "dimensions"):
        table.add_column(c)
    for m in sorted(metrics, key=lambda m: (m.domain, m.name)):
        title = " / ".join(t for t in (m.title.zh, m.title.en) if t)
        table.add_row(m.name, title, m.domain, m.tier, m.owner, m.grain, m.unit, ", ".join(m.dimensions))
    console.print(table)


@metrics_app.command("show")
def metrics_show(name: Annotated[str, typer.Argument()]) -> None:
    """Show one metric's definition and the SQL it compiles to."""
    import yaml

    from metricloop.metrics.compile import aggregate_query

    ws = open_ws()
    catalog = ws.catalog()
    m = catalog.metric(name)
    console.print(yaml.safe_dump(m.normalized(), allow_unicode=True, sort_keys=False), markup=False, highlight=False)
    if not m.derived and m.source in catalog.sources:
        src = ws.source(m.source, catalog)  # sources connect lazily: building SQL needs no connection
        console.rule(f"SQL ({src.dialect})")
        sql = aggregate_query(m, src.relation(table=m.table, sql=m.sql), src.dialect, by=[], grain=m.grain)
        console.print(sql, markup=False, highlight=False)


def _print_frame(df, fmt: str, limit: int | None) -> None:
    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
        return
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", force_ascii=False, indent=1) + "\n")
        return
    if fmt != "table":
        raise MetricloopError(f"--format must be table, csv or json, not '{fmt}'")
    shown = df.tail(limit) if limit else df
    table = Table(
        caption=f"{len(df):,} rows" + (f" (last {len(shown)} shown; --limit 0 for all)" if len(shown) < len(df) else "")
    )
    for c in shown.columns:
        table.add_column(str(c), justify="right" if str(shown[c].dtype) != "object" else "left")
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            if v is None or (isinstance(v, float) and v != v):
                cells.append(Text("–", style="dim"))
            elif isinstance(v, float):
                cells.append(f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    console.print(table)


@metrics_app.command("query")
def metrics_query(
    name: Annotated[str, typer.Argument()],
    by: Annotated[list[str] | None, typer.Option("--by", help="Dimensions, comma-separated.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start (inclusive), e.g. 2026-10-01.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (exclusive).")] = None,
    grain: Annotated[str | None, typer.Option(help="minute, hour, day, week, month, or 5min, 2h….")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="DIM=VALUE (VALUE|VALUE for several).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format (0 = all).")] = 40,
    show_sql: Annotated[bool, typer.Option("--sql", help="Print the SQL sent to the source.")] = False,
) -> None:
    """Query a metric by time and dimension (long form: time, dims, value, row_count, …, flag)."""
    from metricloop.metrics.query import query_metric

    ws = open_ws()
    frame = query_metric(ws, name, by=_split(by), start=start, end=end, grain=grain, where=where)
    if show_sql:
        for sql in frame.sql:
            err_console.print(sql, markup=False, highlight=False)
    _print_frame(frame.df, fmt, limit or None)


@metrics_app.command("slices")
def metrics_slices(
    name: Annotated[str, typer.Argument()],
    by: Annotated[list[str], typer.Option("--by", help="Dimensions to explode, comma-separated.")],
    combos: Annotated[str, typer.Option(help="all, each or full.")] = "all",
    top: Annotated[int | None, typer.Option("--top", help="Keep the top N slices by volume per combination.")] = None,
    min_volume: Annotated[float | None, typer.Option(help="Drop slices averaging less volume per bucket.")] = None,
    start: Annotated[str | None, typer.Option("--from")] = None,
    end: Annotated[str | None, typer.Option("--to")] = None,
    grain: Annotated[str | None, typer.Option()] = None,
    fmt: Annotated[str, typer.Option("--format", help="summary, csv or json")] = "summary",
) -> None:
    """Explode a metric over dimensions: every slice's series, with the total, top-N and a volume floor."""
    from metricloop.metrics.slices import explode

    ws = open_ws()
    df = explode(
        ws, name, dims=_split(by), combos=combos, top_n=top, min_volume=min_volume, start=start, end=end, grain=grain
    )
    if fmt != "summary":
        _print_frame(df, fmt, None)
        return
    summary = df.groupby("slice", sort=False).agg(
        buckets=("time", "size"), volume=("volume", "sum"), last=("value", "last")
    )
    summary = summary.sort_values("volume", ascending=False).reset_index()
    console.print(f"{len(summary):,} slices × {df['time'].nunique():,} buckets")
    _print_frame(summary, "table", 40)


@metrics_app.command("check")
def metrics_check(
    name: Annotated[str, typer.Argument()],
    at: Annotated[str | None, typer.Option(help="Check as of this time (default: now).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Data quality: freshness and completeness. Exit code 1 when a check fails."""
    from metricloop.metrics.quality import check_metric

    ws = open_ws()
    checks = check_metric(ws, name, at=at)
    if fmt == "json":
        sys.stdout.write(json.dumps([c.to_dict() for c in checks], ensure_ascii=False, indent=2) + "\n")
    else:
        table = Table(title=f"data quality: {name}")
        for c in ("metric", "check", "slice", "status", "message"):
            table.add_column(c)
        colour = {"ok": "green", "fail": "red", "error": "red"}
        for c in checks:
            table.add_row(c.metric, c.check, c.slice, Text(c.status, style=colour[c.status]), c.message)
        console.print(table)
    if any(c.status != "ok" for c in checks):
        raise typer.Exit(1)


def _register_extensions() -> None:
    """Commands from other domains register themselves the way an extension would."""
    import importlib

    for name in ("metricloop.cli_detect", "metricloop.cli_rca", "metricloop.cli_loop", "metricloop.cli_notify",
                 "metricloop.cli_users", "metricloop.cli_feedback", "metricloop.cli_knowledge", "metricloop.cli_tune",
                 "metricloop.cli_review"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(app)


_register_extensions()


def main() -> None:
    try:
        app()
    except MetricloopError as e:
        err_console.print(f"[bold red]error:[/] {esc(e)}", markup=True, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
