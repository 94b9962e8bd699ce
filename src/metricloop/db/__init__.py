from metricloop.db.engine import Database, migrate, open_database
from metricloop.db.models import Base

__all__ = ["Base", "Database", "migrate", "open_database"]
