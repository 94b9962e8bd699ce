"""Bounds on what one input may cost, in one place so docs/api.md and docs/definitions.md can name them.

Free text that people write (a comment, a reason, a note, a root cause) is stored in the timeline and sent in
messages; matchers are checked against every alert; definition YAML is expanded in memory. Each has a cap, and
going over it is refused with a clear error that names the field and the maximum (API: 422).
"""

from __future__ import annotations

from metricloop.errors import InvalidInput

MAX_TEXT = 10_000
"""Characters in a comment, a reason, a resolution note or a root cause."""

MAX_MATCHERS = 50
"""Matchers in one silence, route, maintenance window or severity rule."""

MAX_MATCHER_LENGTH = 1_000
"""Characters in one matcher (`label=value`, `label=~regex`, …)."""

YAML_MAX_ALIASES = 100
"""Alias uses (`*name`) in one definition file."""

YAML_MAX_NODES = 200_000
"""Values in one definition file once its aliases are expanded (a 'billion laughs' file stops here)."""

YAML_MAX_DEPTH = 100
"""Nesting of lists and mappings in one definition file."""

DEFAULT_STATEMENT_TIMEOUT = "60s"
"""How long one query may run at a source unless the source sets `statement_timeout`."""


class LimitExceeded(InvalidInput):
    """An input over one of the limits above: refused before it costs anything (API: 422)."""


def check_text(value: str | None, field: str, *, maximum: int = MAX_TEXT) -> str | None:
    """`value` unchanged, or LimitExceeded naming `field` and the maximum."""
    if value is not None and len(value) > maximum:
        raise LimitExceeded(f"{field} is too long: {len(value):,} characters, at most {maximum:,} allowed", where=field)
    return value
