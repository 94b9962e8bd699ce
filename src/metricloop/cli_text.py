"""Rich output that shows people's text as written.

Rich reads `[...]` as markup, so a name pattern `^[a-z][a-z0-9_]{0,62}$`, a matcher `store=~[A-Z]+`, a comment
or a path with brackets would lose parts of itself. Every value that is not ours goes through `esc()` in a
printed line, and table cells and titles are plain text unless given as a styled `Text`.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table as _RichTable
from rich.text import Text


def esc(value: object) -> str:
    """`value` as text for a Rich markup string, shown exactly as it is."""
    return escape(str(value))


class Table(_RichTable):
    """A Rich table whose string cells and title are plain text (pass a Text for a styled cell)."""

    def __init__(self, *headers, title: str | Text | None = None, **options) -> None:
        super().__init__(*headers, title=Text(title) if isinstance(title, str) else title, **options)

    def add_row(self, *cells, **options) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in cells), **options)


__all__ = ["Table", "Text", "esc"]
