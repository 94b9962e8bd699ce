"""Alertmanager-style label matchers: `label=value`, `label!=value`, `label=~regex`, `label!~regex`.

Regular expressions are compiled with RE2 (google-re2), so matching takes time linear in the label's length
whatever the pattern: a pattern such as `(a+)+$` cannot stall the alert path. RE2 has no backreferences or
look-arounds; a pattern that uses them is refused with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import re2

from metricloop.limits import MAX_MATCHER_LENGTH, MAX_MATCHERS

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised with its reason; RE2 need not also print it to stderr


@lru_cache(maxsize=4096)
def compile_regex(pattern: str):
    """An RE2 pattern, or ValueError saying why RE2 cannot take it."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"invalid regular expression (RE2 syntax: no backreferences or look-arounds): {reason}"
        ) from None


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: object = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = str(labels.get(self.label, ""))
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = (self.regex or compile_regex(self.value)).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    text = str(text)
    if len(text) > MAX_MATCHER_LENGTH:
        raise ValueError(f"a matcher is {len(text):,} characters long; at most {MAX_MATCHER_LENGTH:,} are allowed")
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a matcher (use label=value, label!=value, label=~regex or label!~regex)")
    label, op, value = m.groups()
    value = value.strip("\"'")
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_regex(value)
        except ValueError as e:
            raise ValueError(f"'{text}': {e}") from None
    return Matcher(label, op, value, regex)


def parse_matchers(items: list[str]) -> list[Matcher]:
    if len(items) > MAX_MATCHERS:
        raise ValueError(f"{len(items):,} matchers given; at most {MAX_MATCHERS} are allowed")
    return [parse_matcher(i) for i in items]


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def validate_matchers(items: list[str]) -> list[str]:
    """For pydantic validators: raise ValueError on the first bad matcher, keep the text."""
    parse_matchers(items)
    return items
