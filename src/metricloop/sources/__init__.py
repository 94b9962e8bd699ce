"""Sources: where metric data lives. Embedded DuckDB over files, or any SQLAlchemy URL."""

from metricloop.sources.base import Source, open_source

__all__ = ["Source", "open_source"]
