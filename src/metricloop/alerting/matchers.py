"""Alertmanager-style label matchers: `label=value`, `label!=value`, `label=~regex`, `label!~regex`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = str(labels.get(self.label, ""))
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(str(text))
    if not m:
        raise ValueError(f"'{text}' is not a matcher (use label=value, label!=value, label=~regex or label!~regex)")
    label, op, value = m.groups()
    value = value.strip("\"'")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"'{text}': invalid regular expression: {e}") from None
    return Matcher(label, op, value)


def parse_matchers(items: list[str]) -> list[Matcher]:
    return [parse_matcher(i) for i in items]


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def validate_matchers(items: list[str]) -> list[str]:
    """For pydantic validators: raise ValueError on the first bad matcher, keep the text."""
    parse_matchers(items)
    return items
