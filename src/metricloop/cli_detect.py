"""`metricloop detect` (CSV files) and `metricloop backtest` (a metric's history). Never notifies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from metricloop.cli_text import Table, esc
from metricloop.errors import MetricloopError

console = Console()
err_console = Console(stderr=True)


def _params(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise MetricloopError(f"expected KEY=VALUE, got {item!r}", where="--set")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _calendar(holidays: bool, events: Path | None):
    from metricloop.detect.calendar import Calendar, read_events

    # on: each series is judged by the holidays only where its own past holidays looked like days off
    return Calendar(read_events(events) if events else None, china_holidays="learn" if holidays else False)


def detect_command(
    input: Annotated[Path, typer.Argument(help="A CSV file, or a folder of CSV files (processed recursively).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output CSV (a folder when INPUT is a folder).")],
    time_col: Annotated[str | None, typer.Option("--time-col", help="Timestamp column (default: detected).")] = None,
    value_col: Annotated[str | None, typer.Option("--value-col", help="Value column (default: first numeric).")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="Column naming the series in a long-form file "
                                               "(default: a text column with few distinct values).")] = None,
    detector: Annotated[str, typer.Option("--detector", "-d", help="Detector name (see docs/detectors.md).")] = "auto",
    sensitivity: Annotated[float, typer.Option("--sensitivity", "-s", min=0, max=10, help="0 (few) … 10 (many).")] = 5,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Detector option KEY=VALUE, e.g. upper=100.")] = None,
    holidays: Annotated[bool, typer.Option("--holidays/--no-holidays", help="Apply Chinese public holidays.")] = True,
    events: Annotated[Path | None, typer.Option("--events", help="CSV of custom events (name,start,end).")] = None,
) -> None:
    """Detect anomalies in CSV files: one output row per input row, columns
    timestamp,value,expected,lower,upper,score,is_anomaly (and the id column of a long-form file)."""
    from metricloop.detect.base import get_detector
    from metricloop.detect.csvio import detect_csv, write_csv

    params = _params(set_)
    get_detector(detector, {"sensitivity": sensitivity, **params})  # validate options before reading anything
    cal = _calendar(holidays, events)
    if not input.exists():
        raise MetricloopError("no such file or folder", where=str(input))
    if input.is_file():
        res = detect_csv(input, time_col=time_col, value_col=value_col, id_col=id_col, detector=detector,
                         sensitivity=sensitivity, params=params, calendar=cal)
        for w in res.warnings:
            err_console.print(f"[yellow]warning:[/] {esc(input)}: {esc(w)}", highlight=False)
        write_csv(res.frame, output)
        n = int(res.frame["is_anomaly"].sum())
        console.print(f"{len(res.frame)} rows, {n} anomal{'y' if n == 1 else 'ies'} → {esc(output)}", highlight=False)
        return
    files = sorted(p for p in input.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise MetricloopError("no .csv files in this folder", where=str(input))
    if output.exists() and output.is_file():
        raise MetricloopError("INPUT is a folder, so --output must be a folder", where=str(output))
    failed: list[tuple[Path, str]] = []
    total_rows = total_anom = 0
    with Progress(TextColumn("[bold]detect[/]"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=err_console, transient=False) as bar:
        task = bar.add_task("", total=len(files))
        for f in files:
            rel = f.relative_to(input)
            bar.update(task, description=esc(rel))
            try:
                res = detect_csv(f, time_col=time_col, value_col=value_col, id_col=id_col, detector=detector,
                                 sensitivity=sensitivity, params=params, calendar=cal)
            except MetricloopError as exc:
                failed.append((rel, exc.message))
            else:
                for w in res.warnings:
                    bar.console.print(f"[yellow]warning:[/] {esc(rel)}: {esc(w)}", highlight=False)
                write_csv(res.frame, output / rel)
                total_rows += len(res.frame)
                total_anom += int(res.frame["is_anomaly"].sum())
            bar.advance(task)
    console.print(f"{len(files) - len(failed)} file(s), {total_rows} rows, {total_anom} anomalies → {esc(output)}",
                  highlight=False)
    for rel, msg in failed:
        err_console.print(f"[bold red]error:[/] {esc(rel)}: {esc(msg)}", highlight=False)
    if failed:
        raise typer.Exit(1)


def backtest_command(
    metric: Annotated[str, typer.Option("--metric", "-m", help="Metric name.")],
    by: Annotated[str | None, typer.Option("--by", help="Dimensions to slice by, comma-separated.")] = None,
    combos: Annotated[str, typer.Option("--combos", help="all | each: dimension combinations.")] = "all",
    start: Annotated[str | None, typer.Option("--from", help="Start of the history (default: all).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of the history (exclusive).")] = None,
    grain: Annotated[str | None, typer.Option("--grain", help="Time grain (default: the metric's).")] = None,
    detector: Annotated[str, typer.Option("--detector", "-d", help="Detector name.")] = "auto",
    sensitivity: Annotated[float, typer.Option("--sensitivity", "-s", min=0, max=10)] = 5,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Detector option KEY=VALUE.")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Labelled incidents CSV to score against.")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="CSV of custom events (name,start,end).")] = None,
    holidays: Annotated[bool, typer.Option("--holidays/--no-holidays", help="Apply Chinese public holidays.")] = True,
    top: Annotated[int, typer.Option("--top", help="Anomalies to list (most recent first).")] = 30,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write every anomaly to this CSV.")] = None,
) -> None:
    """Walk-forward detection over a metric's history: what would have been raised. Never notifies."""
    import pandas as pd

    from metricloop.cli import open_ws
    from metricloop.detect.backtest import backtest
    from metricloop.detect.base import get_detector
    from metricloop.detect.scoring import read_labels

    if combos not in ("all", "each"):
        raise MetricloopError("use all or each", where="--combos")
    config = {"sensitivity": sensitivity, **_params(set_)}
    get_detector(detector, config)
    lab = read_labels(labels) if labels else None
    dims = [d.strip() for d in by.split(",") if d.strip()] if by else []
    ws = open_ws()
    with err_console.status(f"backtesting {esc(metric)}…"):
        res = backtest(ws, metric, by=dims, combos=combos if combos == "all" else [[d] for d in dims],  # type: ignore[arg-type]
                       start=start, end=end, grain=grain, detector=detector, config=config,
                       calendar=_calendar(holidays, events), labels=lab)
    an = res.anomalies
    console.print(f"[bold]{esc(metric)}[/] {res.grain}: {len(res.series)} series, {len(an)} anomalous points in "
                  f"{len(res.events)} events over {res.months:.1f} months (backtest: nothing was sent)")
    if len(an):
        table = Table("time", "slice", "score", "explanation (--output has every field)")
        fmt = "%Y-%m-%d %H:%M" if res.grain in ("hour", "minute") else "%Y-%m-%d"
        for r in an.sort_values("time", ascending=False).head(top).itertuples():
            table.add_row(pd.Timestamp(r.time).strftime(fmt), r.slice or "*", f"{r.score:.4f}", r.explanation_en)
        console.print(table)
    if len(res.held):
        console.print(f"{len(res.held)} point(s) held back by a data-quality check (late or incomplete data)")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        an.to_csv(output, index=False)
        console.print(f"anomalies → {esc(output)}")
    if res.score is not None:
        s = res.score
        console.print(
            f"event-level precision {s.precision:.3f}  recall {s.recall:.3f}  F1 {s.f1:.3f}  "
            f"({s.detected}/{s.labels} labels detected, {s.true_alerts} true and {s.false_alerts} false alert events; "
            f"{s.alerts_per_series_per_month:.3f} alerts per series per month)"
        )


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_command)
    app.command("backtest")(backtest_command)
