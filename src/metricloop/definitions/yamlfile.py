"""Read definition YAML keeping each value's line, so errors can name file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metricloop.errors import Problem


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


def _walk(node: yaml.Node, path: tuple, lines: dict, problems: list[Problem], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
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
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, (*path, i), lines, problems, file) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def load_text(text: str, file: str) -> tuple[Located | None, list[Problem]]:
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    value = _walk(node, (), lines, problems, file)
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
