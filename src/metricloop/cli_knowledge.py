"""`metricloop knowledge`: search, list, show, edit and export the knowledge base; list the root-cause categories."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from metricloop.cli_text import Table, Text, esc
from metricloop.errors import MetricloopError

FORMATS = ("table", "json")
Category = Annotated[str | None, typer.Option(help="Only this root-cause category.")]
Metric = Annotated[str | None, typer.Option(help="Only entries of this metric.")]
Offset = Annotated[int, typer.Option(min=0)]
Format = Annotated[str, typer.Option("--format", help="table | json")]


def _format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise MetricloopError(f"unknown format '{fmt}': use table or json", where="--format")
    return fmt


def _duration(seconds: float | None) -> str:
    from metricloop.knowledge.similar import duration_text

    return duration_text(seconds, "en")


def _table(rows: list[dict], title: str, *, scored: bool):
    table = Table(title=title)
    for c in ("id", "incident", "resolved (UTC)", "metric", "slice", "category", "cause", "actions", "took",
              *(("score", "matched") if scored else ())):
        table.add_column(c, overflow="fold")
    for r in rows:
        cells = [str(r["id"]), f"#{r['incident_id']}" if r["incident_id"] else "-",
                 (r["resolved_at"] or "")[:16].replace("T", " "), r["metric"], ", ".join(r["slices"] or []),
                 Text(f"{r['category_zh']} ({r['category']})", style="bold"), r["cause"], r["actions"],
                 _duration(r["duration_seconds"])]
        if scored:
            cells += [f"{r['score']:.2f}", ", ".join(r["matched"])]
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    from metricloop import cli

    console = cli.console
    kb = typer.Typer(help="Knowledge base (知识库): what was done last time — search, show, edit, export.",
                     no_args_is_help=True)
    app.add_typer(kb, name="knowledge")

    def _emit(rows: list[dict], fmt: str, title: str, *, scored: bool) -> None:
        if fmt == "json":
            sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        elif not rows:
            console.print("no entries" if not scored else "nothing found")
        else:
            console.print(_table(rows, title, scored=scored))

    def _rows(category: str | None, fetch) -> list[dict]:
        """fetch(session, catalog, category name) → [(entry, extra fields)], as dicts, in one unit of work."""
        from metricloop.knowledge import categories as cats
        from metricloop.knowledge import service

        ws = cli.open_ws()
        with ws.db.session() as s:
            catalog = ws.catalog()
            name = cats.check_category(catalog, category, where="--category", retired=True) if category else None
            return [{**service.entry_dict(s, catalog, e), **extra} for e, extra in fetch(s, catalog, name)]

    @kb.command("search")
    def knowledge_search(
        query: Annotated[str, typer.Argument(help="Words in Chinese or English, e.g. 断货 or stock-out.")],
        category: Category = None,
        metric: Metric = None,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
        offset: Offset = 0,
        fmt: Format = "table",
    ) -> None:
        """Entries ranked by how well they match the words (BM25 over character n-grams), best first."""
        from metricloop.knowledge import service

        fmt = _format(fmt)

        def fetch(s, catalog, name):
            try:
                found = service.search(s, catalog, query, category=name, metric=metric, limit=limit, offset=offset)
            except MetricloopError as e:
                raise MetricloopError(e.message, where="QUERY") from None
            return [(e, {"score": score, "matched": words}) for e, score, words in found]

        _emit(_rows(category, fetch), fmt, f"knowledge: {query}", scored=True)

    @kb.command("list")
    def knowledge_list(
        category: Category = None,
        metric: Metric = None,
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
        offset: Offset = 0,
        fmt: Format = "table",
    ) -> None:
        """Entries, the most recently resolved first."""
        from metricloop.knowledge import service

        fmt = _format(fmt)

        def fetch(s, _catalog, name):
            rows = service.list_entries(s, category=name, metric=metric, limit=limit, offset=offset)
            return [(e, {}) for e in rows]

        _emit(_rows(category, fetch), fmt, "knowledge", scored=False)

    @kb.command("show")
    def knowledge_show(
        entry_id: Annotated[int, typer.Argument(help="The entry's id.")],
        fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    ) -> None:
        """One entry and its earlier versions (who wrote each, who replaced it, when and why)."""
        from metricloop.knowledge import service

        fmt = _format(fmt)
        ws = cli.open_ws()
        with ws.db.session() as s:
            d = service.entry_dict(s, ws.catalog(), service.get_entry(s, entry_id), with_versions=True)
        if fmt == "json":
            sys.stdout.write(json.dumps(d, ensure_ascii=False, indent=2) + "\n")
            return
        console.print(f"[bold]#{d['id']}[/] {esc(d['title'])}  version {d['version']} "
                      f"({esc(d['updated_by'])}, {esc((d['updated_at'] or '')[:16])})")
        for label, key in (("category", "category"), ("cause", "cause"), ("actions", "actions"),
                           ("resolved by", "resolved_by"), ("slices", "slices")):
            value = ", ".join(d[key]) if isinstance(d[key], list) else d[key]
            if key == "category":
                value = f"{d['category_zh']} / {d['category_en']} ({d['category']}, {d['category_source']})"
            console.print(f"  {label}: {esc(value)}")
        console.print(f"  took: {_duration(d['duration_seconds']) or '-'}")
        if d["versions"]:
            table = Table(title="earlier versions")
            for c in ("version", "category", "cause", "actions", "written by", "replaced by", "replaced (UTC)",
                      "why"):
                table.add_column(c, overflow="fold")
            for v in d["versions"]:
                table.add_row(str(v["version"]), v["category"], v["cause"], v["actions"], v["written_by"],
                              v["replaced_by"], (v["replaced_at"] or "")[:16].replace("T", " "), v["reason"])
            console.print(table)

    @kb.command("edit")
    def knowledge_edit(
        entry_id: Annotated[int, typer.Argument(help="The entry's id.")],
        category: Annotated[str | None, typer.Option(help="A root-cause category (knowledge categories).")] = None,
        cause: Annotated[str | None, typer.Option(help="What caused it.")] = None,
        actions: Annotated[str | None, typer.Option(help="The actions that worked.")] = None,
        reason: Annotated[str, typer.Option(help="Why it is changed (kept with the version).")] = "",
        actor: Annotated[str | None, typer.Option("--as")] = None,
    ) -> None:
        """Change an entry's category, cause or actions; the entry as it was is kept as a version."""
        from metricloop.knowledge import service

        ws = cli.open_ws()
        with ws.db.session() as s:
            e = service.edit_entry(s, ws.catalog(), entry_id=entry_id, actor=actor or cli.settings().author,
                                   category=category, cause=cause, actions=actions, reason=reason)
            console.print(f"[green]✓[/] knowledge entry #{e.id} is now version {e.version}")

    @kb.command("export")
    def knowledge_export(
        output: Annotated[Path, typer.Option("--output", "-o", help="The file to write (.json or .csv).")],
        fmt: Annotated[str | None, typer.Option("--format", help="json | csv (default: from the file name)")] = None,
    ) -> None:
        """Write every entry to a file: JSON (with each entry's versions) or CSV (the current versions)."""
        from metricloop.knowledge import service

        ws = cli.open_ws()
        with ws.db.session() as s:
            n = service.export_entries(s, ws.catalog(), output, fmt=fmt)
        console.print(f"[green]✓[/] {n} knowledge entr{'y' if n == 1 else 'ies'} written to {esc(output)}")

    @kb.command("categories")
    def knowledge_categories(fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table") -> None:
        """The governed root-cause categories (stock list + the workspace's `root_causes` definitions)."""
        from metricloop.knowledge import categories as cats

        fmt = _format(fmt)
        items = [c.as_dict() for c in cats.categories(cli.open_ws().catalog())]
        if fmt == "json":
            sys.stdout.write(json.dumps(items, ensure_ascii=False, indent=2) + "\n")
            return
        table = Table(title="root-cause categories")
        for c in ("name", "zh", "en", "keywords", "state"):
            table.add_column(c, overflow="fold")
        for c in items:
            state = "retired" if c["retired"] else ("stock" if c["stock"] else "defined")
            table.add_row(c["name"], c["zh"], c["en"], ", ".join(c["keywords"]), state)
        console.print(table)
