"""Read definition YAML keeping each value's line, so errors can name file, line and field.

YAML aliases let a 1 KB file stand for a billion values ("billion laughs"). The loader here counts alias uses,
nesting and the values the document expands to, and refuses a file over metricloop.limits' YAML_MAX_* with the
file and line, before the expansion costs time or memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metricloop.errors import MetricloopError, Problem
from metricloop.limits import YAML_MAX_ALIASES, YAML_MAX_DEPTH, YAML_MAX_NODES


class _TooBig(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader's composer, refusing more than YAML_MAX_ALIASES alias uses or YAML_MAX_DEPTH levels."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _TooBig(f"more than {YAML_MAX_ALIASES} aliases (*name); write the values out", mark.line + 1)
            return super().compose_node(parent, index)
        starts = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if starts:
            self._depth += 1
            if self._depth > YAML_MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooBig(f"nested more than {YAML_MAX_DEPTH} levels deep", mark.line + 1)
        try:
            return super().compose_node(parent, index)
        finally:
            if starts:
                self._depth -= 1


@dataclass
class Located:
    """A parsed YAML value and the line of every path inside it."""

    value: Any
    lines: dict[tuple, int]
    file: str

    def line(self, path: tuple) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document that expands to more than YAML_MAX_NODES values, or that contains itself, by counting
    each distinct node once (an alias is the same node object as its anchor): linear in the file, not in what
    its aliases expand to."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > YAML_MAX_NODES:
                raise _TooBig(
                    f"the document expands to more than {YAML_MAX_NODES:,} values through its aliases "
                    f"(from line {node.start_mark.line + 1})",
                    node.start_mark.line + 1,
                )
            continue
        if key in sizes:
            continue
        if key in open_:
            raise _TooBig("an alias refers to the list or mapping it is inside", node.start_mark.line + 1)
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _walk(node: yaml.Node, path: tuple, lines: dict, problems: list[Problem], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        merged: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # a list or mapping as a key: never a definition field
                problems.append(
                    Problem(
                        "a key must be a plain value, not a list or mapping",
                        file=file,
                        line=key_node.start_mark.line + 1,
                        field=_dotted(path) or None,
                    )
                )
                continue
            if key_node.tag == MERGE_TAG:  # `<<: *defaults`: the keys of the mappings named, under this one's
                merged.update(_merge(value_node, path, lines, problems, file))
                lines[path] = node.start_mark.line + 1
                continue
            key = _scalar(key_node)
            if key in out:
                problems.append(
                    Problem(
                        f"key '{key}' appears twice (first on line {lines[(*path, key)]})",
                        file=file,
                        line=key_node.start_mark.line + 1,
                        field=_dotted((*path, key)),
                    )
                )
                continue
            out[key] = _walk(value_node, (*path, key), lines, problems, file)
        return {**merged, **out} if merged else out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*path, i), lines, problems, file) for i, v in enumerate(node.value)]
    return _scalar(node)


MERGE_TAG = "tag:yaml.org,2002:merge"


def _merge(value: yaml.Node, path: tuple, lines: dict, problems: list[Problem], file: str) -> dict:
    """The keys a merge (`<<: *a` or `<<: [*a, *b]`) brings in; the first mapping named wins, as in YAML 1.1."""
    sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
    out: dict = {}
    for src in sources:
        if not isinstance(src, yaml.MappingNode):
            problems.append(Problem("`<<` merges mappings only", file=file, line=src.start_mark.line + 1))
            continue
        for k, v in _walk(src, path, lines, problems, file).items():
            out.setdefault(k, v)
    return out


def _scalar(node: yaml.ScalarNode) -> Any:
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)  # no reader or parser: cheap


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_text(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except _TooBig as e:
        return None, [Problem(e.message, file=file, line=e.line)]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        what = getattr(e, "problem", None) or str(e)
        context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            what += f" ({context} that starts on line {context_mark.line + 1})"
        return None, [Problem(f"malformed YAML: {what}", file=file, line=mark.line + 1 if mark else None)]
    if node is None:
        return Located({}, {(): 1}, file), []
    lines: dict[tuple, int] = {}
    try:
        _check_expansion(node)
        value = _walk(node, (), lines, problems, file)
    except _TooBig as e:
        return None, [Problem(e.message, file=file, line=e.line)]
    except RecursionError:  # aliases of aliases can nest deeper than the file itself does
        return None, [Problem(f"nested too deeply (more than {YAML_MAX_DEPTH} levels)", file=file)]
    return Located(value, lines, file), problems


def load_file(path: Path, display: str | None = None) -> tuple[Located | None, list[Problem]]:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem(f"cannot read file: {e}", file=name)]
    return load_text(text, name)


def dotted(path: tuple) -> str:
    return _dotted(path)


def safe_load(text: str, file: str) -> Any:
    """The plain value of a YAML document from a person (e.g. metricloop.yaml), with the same bounds as
    definitions; MetricloopError naming the file and line when it is malformed or too big."""
    located, problems = load_text(text, file)
    if located is None or problems:
        raise MetricloopError(str(problems[0]))
    return located.value
