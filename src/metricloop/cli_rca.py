"""`metricloop rca`: which dimension-value combinations explain a deviation, from a file of leaf rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from metricloop.errors import MetricloopError

console = Console()
err_console = Console(stderr=True)


def _read(path: Path):
    import pandas as pd

    try:
        return pd.read_csv(path, dtype_backend="numpy_nullable", keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MetricloopError(f"cannot read the CSV: {exc}", where=str(path)) from exc


def rca_command(
    input: Annotated[Path | None, typer.Argument(help="A CSV of leaf rows (one per combination of dimension "
                                                       "values), or a folder of such CSVs. Or use --metric.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", "-m", help="Explain a governed metric instead of a "
                                                                      "file (with --at).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="With --metric: the bucket to explain, e.g. 2026-11-18 "
                                                        "or 2026-10-29T12:00.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="With --metric: dimensions to drill into, comma-separated "
                                                        "(default: those dense enough to read).")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="With --metric: DIM=VALUE, the slice to "
                                                                    "explain (repeatable).")] = None,
    grain: Annotated[str | None, typer.Option("--grain", help="With --metric: hour, day, … (default: the "
                                                              "metric's).")] = None,
    actual: Annotated[str | None, typer.Option("--actual", help="Column of actual values (additive metrics).")] = None,
    expected: Annotated[str | None, typer.Option("--expected", help="Column of expected values.")] = None,
    actual_num: Annotated[str | None, typer.Option("--actual-num", help="Ratios: actual numerator column.")] = None,
    actual_den: Annotated[str | None, typer.Option("--actual-den", help="Ratios: actual denominator column.")] = None,
    expected_num: Annotated[str | None, typer.Option("--expected-num", help="Ratios: expected numerator.")] = None,
    expected_den: Annotated[str | None, typer.Option("--expected-den", help="Ratios: expected denominator.")] = None,
    dims: Annotated[str | None, typer.Option("--dims", help="Dimension columns, comma-separated "
                                                           "(default: every non-numeric column).")] = None,
    max_depth: Annotated[int, typer.Option("--max-depth", min=1, max=5, help="Most dimensions in one cause.")] = 3,
    sensitivity: Annotated[float, typer.Option("--sensitivity", "-s", min=0, max=10,
                                               help="0 (only the clearest) … 10 (more causes).")] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSON here (a folder when INPUT "
                                                                       "is a folder).")] = None,
    format: Annotated[str, typer.Option("--format", help="table | json (without --output).")] = "table",
) -> None:
    """Find the smallest set of dimension-value combinations that explains the deviation of actual from
    expected. Output: {"causes": [{"dimensions", "actual", "expected", "deviation_pct", "share"}, …]},
    most important first; an empty list when nothing stands out."""
    from metricloop.rca.drilldown import find_causes, find_ratio_causes

    if metric is not None or at is not None:
        if input is not None or actual or expected:
            raise MetricloopError("use either INPUT with --actual/--expected or --metric with --at, not both",
                                  where="options")
        return _metric_rca(metric, at, by, where, grain, format)
    if input is None:
        raise MetricloopError("give INPUT (a CSV of leaf rows) or --metric NAME --at TIME", where="options")
    ratio = [actual_num, actual_den, expected_num, expected_den]
    if any(ratio):
        if not all(ratio):
            raise MetricloopError("a ratio needs all four of --actual-num, --actual-den, --expected-num, "
                                  "--expected-den", where="options")
        if actual or expected:
            raise MetricloopError("use either --actual/--expected or the four ratio options, not both",
                                  where="options")
    elif not (actual and expected):
        raise MetricloopError("name the value columns: --actual COL --expected COL (or the ratio options)",
                              where="options")
    if format not in ("table", "json"):
        raise MetricloopError("use table or json", where="--format")
    dim_list = [d.strip() for d in dims.split(",") if d.strip()] if dims else None

    def run(path: Path):
        frame = _read(path)
        if any(ratio):
            return find_ratio_causes(frame, actual_num=actual_num, actual_den=actual_den, expected_num=expected_num,
                                     expected_den=expected_den, dims=dim_list, max_depth=max_depth,
                                     sensitivity=sensitivity, where=str(path))
        return find_causes(frame, actual=actual, expected=expected, dims=dim_list, max_depth=max_depth,
                           sensitivity=sensitivity, where=str(path))

    if not input.exists():
        raise MetricloopError("no such file or folder", where=str(input))
    if input.is_file():
        res = run(input)
        for w in res.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(str(input))}: {escape(w)}", highlight=False)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(res.to_dict(), ensure_ascii=False, indent=2))
            console.print(f"{len(res.causes)} cause(s) → {output}", highlight=False)
        elif format == "json":
            console.print_json(json.dumps(res.to_dict(), ensure_ascii=False))
        else:
            _table(res)
        return
    files = sorted(p for p in input.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise MetricloopError("no .csv files in this folder", where=str(input))
    if output is None:
        raise MetricloopError("INPUT is a folder: name an output folder with --output", where="--output")
    if output.exists() and output.is_file():
        raise MetricloopError("INPUT is a folder, so --output must be a folder", where=str(output))
    failed: list[tuple[Path, str]] = []
    found = 0
    with Progress(TextColumn("[bold]rca[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=err_console, transient=False) as bar:
        task = bar.add_task("", total=len(files))
        for f in files:
            rel = f.relative_to(input)
            bar.update(task, description=escape(str(rel)))
            try:
                res = run(f)
            except MetricloopError as exc:
                failed.append((rel, exc.message))
            else:
                for w in res.warnings:
                    bar.console.print(f"[yellow]warning:[/] {escape(str(rel))}: {escape(w)}", highlight=False)
                target = (output / rel).with_suffix(".json")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(res.to_dict(), ensure_ascii=False, indent=2))
                found += len(res.causes)
            bar.advance(task)
    console.print(f"{len(files) - len(failed)} file(s), {found} cause(s) → {output}", highlight=False)
    for rel, msg in failed:
        err_console.print(f"[bold red]error:[/] {escape(str(rel))}: {escape(msg)}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _table(res) -> None:
    if not res.causes:
        console.print(res.message or "no significant deviation", highlight=False)
        return
    ratio = res.causes[0].effects is not None
    table = Table("#", "cause", "actual", "expected", "deviation", "share of the change",
                  *(["rate effect", "mix effect"] if ratio else []))
    for i, c in enumerate(res.causes, 1):
        pct = c.deviation_pct
        row = [str(i), escape(c.label()), f"{c.actual:,.4g}", f"{c.expected:,.4g}",
               "—" if pct is None else f"{pct:+.1f}%", f"{100 * c.share:.0f}%"]
        if ratio:
            row += [f"{c.effects['rate']:+.4g}", f"{c.effects['mix']:+.4g}"]
        table.add_row(*row)
    console.print(table)


def _metric_rca(metric, at, by, where, grain, format) -> None:
    """`metricloop rca --metric gmv --at 2026-11-18 [--by a,b] [--where k=v] [--format table|json]`."""
    from metricloop.cli import open_ws
    from metricloop.metrics.query import parse_where
    from metricloop.rca.report import analyse

    if not metric or not at:
        raise MetricloopError("name both the metric and the time: --metric NAME --at 2026-11-18", where="options")
    if format not in ("table", "json"):
        raise MetricloopError("use table or json", where="--format")
    ws = open_ws()
    catalog = ws.catalog()
    spec = catalog.metric(metric)
    by_list = [d.strip() for d in by.split(",") if d.strip()] if by else None
    where_map = parse_where(where, spec) or None
    scope = [",".join(f"{k}={v[0]}" for k, v in sorted(where_map.items()))] if where_map else None
    report = analyse(ws, spec.name, at=at, by=by_list, where=where_map, grain=grain, slices=scope,
                     catalog=catalog)
    if format == "json":
        console.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    t = report.to_dict()["total"]
    console.print(f"{escape(spec.label('en'))} ({spec.name}) at {report.at:%Y-%m-%d %H:%M}: actual "
                  f"{t['actual']}, expected {t['expected']} (band {t['lower']}–{t['upper']}), {t['leaves']} leaves "
                  f"over {', '.join(report.dims)}", highlight=False)
    if not report.causes:
        console.print(report.message or "no significant deviation", highlight=False)
        return
    table = Table("#", "cause", "actual", "expected", "deviation", "share")
    for c in report.causes:
        pct = c.get("deviation_pct")
        table.add_row(str(c["rank"]), escape(c["label"]), f"{c['actual']:,.4g}", f"{c['expected']:,.4g}",
                      "—" if pct is None else f"{pct:+.1f}%", f"{100 * c['share']:.0f}%")
    console.print(table)
    if report.related:
        rel = Table("related metric", "slice", "actual", "usually", "abnormal")
        for r in report.related:
            rel.add_row(r["metric"], escape(r["slice"]), str(r.get("actual", r.get("error", ""))),
                        str(r.get("expected", "")), "yes" if r.get("abnormal") else "")
        console.print(rel)
    console.print(escape(report.explanation_zh), highlight=False)
    console.print(escape(report.explanation_en), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("rca")(rca_command)
