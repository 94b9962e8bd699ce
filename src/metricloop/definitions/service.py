"""Apply, export, history and rollback of definitions. All-or-nothing; every change is a version."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metricloop.db.models import Definition, DefinitionVersion
from metricloop.definitions.kinds import KINDS, Catalog, Kind, by_plural, kind_named
from metricloop.definitions.yamlfile import Located, dotted, load_file, load_text
from metricloop.errors import DefinitionError, NotFound, Problem


@dataclass
class Entry:
    """One definition read from a file, with where it came from."""

    kind: str
    name: str
    spec: BaseModel
    file: str | None = None
    line: int | None = None
    path: tuple = ()
    located: Located | None = None

    def problem(self, message: str, field_path: tuple = ()) -> Problem:
        line = self.located.line((*self.path, *field_path)) if self.located else self.line
        where = f"{dotted(self.path)} ({self.name})" if self.path else f"{self.kind} {self.name}"
        if field_path:
            where += "." + dotted(field_path)
        return Problem(message, file=self.file, line=line, field=where)


Check = Callable[[Catalog, list[Entry]], list[Problem]]


@dataclass
class ApplyResult:
    created: list[tuple[str, str, int]] = field(default_factory=list)
    updated: list[tuple[str, str, int]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.created) + len(self.updated)


# ------------------------------------------------------------------ reading


def _pydantic_problems(
    err: ValidationError, located: Located, base: tuple, name: str, tag: str | None
) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        if tag and loc and loc[0] == tag:
            loc = loc[1:]  # a discriminated union's tag (type: …) is not a field
        # Unions of models add the member's class name to the location; keep only real fields.
        # Validators wrapping a model show up as e.g. "function-after[_check(), Measure]"; drop those too.
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p[:1].isupper() or "[" in p)))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "required field is missing"
        field_text = f"{dotted(base)} ({name})" + ("." + dotted(loc) if loc else "")
        out.append(Problem(msg, file=located.file, line=located.line((*base, *loc)), field=field_text))
    return out


def entries_from_located(located: Located) -> tuple[list[Entry], list[Problem]]:
    entries: list[Entry] = []
    problems: list[Problem] = []
    doc = located.value
    if not isinstance(doc, dict):
        return [], [Problem("expected a mapping with keys such as sources: and metrics:", file=located.file, line=1)]
    plurals = by_plural()
    for key, items in doc.items():
        if key not in plurals:
            known = ", ".join(plurals)
            problems.append(
                Problem(f"unknown section '{key}' (known: {known})", file=located.file, line=located.line((key,)))
            )
            continue
        kind = plurals[key]
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(Problem(f"'{key}' must be a list", file=located.file, line=located.line((key,))))
            continue
        for i, raw in enumerate(items):
            path = (key, i)
            name = raw.get("name") if isinstance(raw, dict) else None
            try:
                spec = kind.parse(raw)
            except ValidationError as err:
                tag = raw.get("type") if isinstance(raw, dict) else None
                problems.extend(_pydantic_problems(err, located, path, str(name or "?"), tag))
                continue
            entries.append(
                Entry(
                    kind.name, spec.name, spec, file=located.file, line=located.line(path), path=path, located=located
                )
            )
    return entries, problems


def read_definitions(paths: Iterable[Path]) -> tuple[list[Entry], list[Problem]]:
    """Read YAML files (or folders of *.yaml / *.yml) into entries, collecting every problem."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]))
        elif p.exists():
            files.append(p)
        else:
            problems.append(Problem("no such file or folder", file=str(p)))
    for f in files:
        located, probs = load_file(f)
        problems.extend(probs)
        if located is not None:
            e, probs = entries_from_located(located)
            entries.extend(e)
            problems.extend(probs)
    return entries, problems


def read_text(text: str, file: str = "<input>") -> tuple[list[Entry], list[Problem]]:
    located, problems = load_text(text, file)
    if located is None:
        return [], problems
    entries, more = entries_from_located(located)
    return entries, problems + more


def duplicate_problems(entries: list[Entry]) -> list[Problem]:
    seen: dict[tuple[str, str], Entry] = {}
    out = []
    for e in entries:
        key = (e.kind, e.name)
        if key in seen:
            first = seen[key]
            where = f"{first.file}:{first.line}" if first.file else "another entry"
            out.append(e.problem(f"duplicate {e.kind} name '{e.name}' (also defined at {where})", ("name",)))
        else:
            seen[key] = e
    return out


# ------------------------------------------------------------------ storage


def load_catalog(db_session: Session) -> Catalog:
    specs: dict[str, dict[str, BaseModel]] = {k: {} for k in KINDS}
    for row in db_session.scalars(select(Definition)):
        if row.kind in KINDS:
            specs[row.kind][row.name] = KINDS[row.kind].parse(row.spec)
    return Catalog(specs)


def _dump(spec: dict | None) -> str:
    if spec is None:
        return ""
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True, default_flow_style=False)


def spec_diff(old: dict | None, new: dict | None, label: str) -> str:
    return "".join(
        difflib.unified_diff(
            _dump(old).splitlines(keepends=True),
            _dump(new).splitlines(keepends=True),
            fromfile=f"{label} (before)",
            tofile=f"{label} (after)",
        )
    )


def _write(
    db_session: Session, *, kind: str, name: str, spec: dict, author: str, change: str, comment: str = ""
) -> int | None:
    """Store `spec` as the new current version if it differs. Returns the version, or None if unchanged."""
    row = db_session.scalar(select(Definition).where(Definition.kind == kind, Definition.name == name))
    if row is not None and row.spec == spec:
        return None
    now = datetime.now(UTC)
    last = db_session.scalar(
        select(func.max(DefinitionVersion.version)).where(
            DefinitionVersion.kind == kind, DefinitionVersion.name == name
        )
    )
    version = (last or 0) + 1
    old = row.spec if row is not None else None
    db_session.add(
        DefinitionVersion(
            kind=kind,
            name=name,
            version=version,
            change=change if row is not None or change == "rollback" else "create",
            spec=spec,
            diff=spec_diff(old, spec, f"{kind}/{name}"),
            author=author,
            comment=comment,
            created_at=now,
        )
    )
    if row is None:
        db_session.add(Definition(kind=kind, name=name, version=version, spec=spec, updated_by=author, updated_at=now))
    else:
        row.spec, row.version, row.updated_by, row.updated_at = spec, version, author, now
    return version


def apply(
    db_session: Session,
    *,
    entries: list[Entry],
    author: str,
    problems: list[Problem] | None = None,
    checks: Iterable[Check] = (),
    dry_run: bool = False,
) -> ApplyResult:
    """Validate everything first; write all of it in the caller's transaction, or nothing."""
    problems = list(problems or []) + duplicate_problems(entries)
    if not problems:
        catalog = load_catalog(db_session).with_changes(entries)
        for check in checks:
            problems.extend(check(catalog, entries))
    if problems:
        raise DefinitionError(problems=problems)
    result = ApplyResult()
    order = {k.name: k.order for k in KINDS.values()}
    for e in sorted(entries, key=lambda e: order[e.kind]):
        spec = e.spec.normalized()
        row = db_session.scalar(select(Definition).where(Definition.kind == e.kind, Definition.name == e.name))
        if row is not None and row.spec == spec:
            result.unchanged.append((e.kind, e.name))
            continue
        if dry_run:
            version = row.version + 1 if row is not None else 1
        else:
            version = _write(db_session, kind=e.kind, name=e.name, spec=spec, author=author, change="update")
        (result.created if row is None else result.updated).append((e.kind, e.name, version))
    return result


def export(db_session: Session, kinds: Iterable[str] | None = None) -> dict[str, list[dict]]:
    wanted = {kind_named(k).name for k in kinds} if kinds else set(KINDS)
    out: dict[str, list[dict]] = {}
    for plural, kind in by_plural().items():
        if kind.name not in wanted:
            continue
        rows = db_session.scalars(select(Definition).where(Definition.kind == kind.name).order_by(Definition.name))
        items = [r.spec for r in rows]
        if items:
            out[plural] = items
    return out


def dump_yaml(doc: dict[str, Any]) -> str:
    header = "# metricloop definitions — apply with `metricloop apply FILE`\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def history(db_session: Session, *, kind: str, name: str) -> list[DefinitionVersion]:
    k = kind_named(kind)
    rows = list(
        db_session.scalars(
            select(DefinitionVersion)
            .where(DefinitionVersion.kind == k.name, DefinitionVersion.name == name)
            .order_by(DefinitionVersion.version)
        )
    )
    if not rows:
        raise NotFound(f"no history for {k.name} '{name}'")
    return rows


def rollback(
    db_session: Session, *, kind: str, name: str, version: int, author: str, checks: Iterable[Check] = ()
) -> int | None:
    """Make `version`'s spec current again, as a new version. Validated like an apply."""
    k: Kind = kind_named(kind)
    target = db_session.scalar(
        select(DefinitionVersion).where(
            DefinitionVersion.kind == k.name, DefinitionVersion.name == name, DefinitionVersion.version == version
        )
    )
    if target is None or target.spec is None:
        raise NotFound(f"{k.name} '{name}' has no version {version} (see `metricloop history {k.name} {name}`)")
    entry = Entry(k.name, name, k.parse(target.spec))
    catalog = load_catalog(db_session).with_changes([entry])
    problems = [p for check in checks for p in check(catalog, [entry])]
    if problems:
        raise DefinitionError(problems=problems)
    return _write(
        db_session,
        kind=k.name,
        name=name,
        spec=entry.spec.normalized(),
        author=author,
        change="rollback",
        comment=f"rollback to version {version}",
    )
