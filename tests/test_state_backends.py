"""The state database is SQLite or PostgreSQL; anything else is refused up front with a clear error."""

from __future__ import annotations

import pytest

from metricloop.db.engine import open_database
from metricloop.errors import MetricloopError


@pytest.mark.parametrize("url", ["mysql+pymysql://root@127.0.0.1:3306/test", "mssql+pyodbc://h/db"])
def test_an_unsupported_state_database_is_refused_naming_the_setting(url):
    with pytest.raises(MetricloopError) as e:
        open_database(url)
    assert e.value.where == "METRICLOOP_DB" and "SQLite or PostgreSQL" in e.value.message


def test_sqlite_state_opens(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/state.db")
    with db.session() as s:
        assert s.get_bind().dialect.name == "sqlite"
