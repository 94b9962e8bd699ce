"""Load the demo data set into a PostgreSQL or MariaDB/MySQL server.

``load_into(url, data_dir)`` replaces the tables ``orders``, ``inventory``, ``visitors``,
``complaints``, ``stores``, ``promotions`` and ``holidays`` (drop + create) in one schema (PostgreSQL)
or database (MariaDB/MySQL), creating that schema/database when it is missing.  Column types follow
the Parquet schema; each fact table gets an index on its time column.

PostgreSQL is loaded with ``COPY … FROM STDIN`` inside one transaction, so a failure leaves the
old tables in place.  MariaDB/MySQL gets batched multi-row inserts (DDL there commits implicitly).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url

from metricloop.errors import SourceError

PARTITIONED = {"orders": "order_time", "inventory": "date", "visitors": "visit_hour", "complaints": "created_at"}
PRIMARY_KEYS = {"orders": "order_id", "complaints": "complaint_id"}
_CSV_TYPES = {
    "stores": {"opened": pa.date32()},
    "promotions": {"start": pa.date32(), "end": pa.date32(), "expected_lift": pa.float64()},
    "holidays": {"date": pa.date32(), "is_off_day": pa.bool_(), "is_makeup_workday": pa.bool_()},
}
TABLES = (*PARTITIONED, *_CSV_TYPES)


def _sql_type(arrow_type: pa.DataType) -> sa.types.TypeEngine:
    if pa.types.is_int64(arrow_type):
        return sa.BigInteger()
    if pa.types.is_int32(arrow_type):
        return sa.Integer()
    if pa.types.is_int8(arrow_type) or pa.types.is_int16(arrow_type):
        return sa.SmallInteger()
    if pa.types.is_floating(arrow_type):
        return sa.Double()
    if pa.types.is_boolean(arrow_type):
        return sa.Boolean()
    if pa.types.is_timestamp(arrow_type):
        return sa.DateTime()
    if pa.types.is_date(arrow_type):
        return sa.Date()
    return sa.String(255)


def _resolve_data_dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if not (data_dir / "stores.csv").exists() and (data_dir / "data" / "stores.csv").exists():
        return data_dir / "data"  # a workspace directory was given
    missing = [t for t in TABLES if not (data_dir / f"{t}.csv").exists() and not (data_dir / t).is_dir()]
    if missing:
        raise SourceError(f"no demo data for {', '.join(missing)} (run the demo generator first)",
                          where=str(data_dir))
    return data_dir


def _files(data_dir: Path, name: str) -> list[Path]:
    return sorted((data_dir / name).glob(f"{name}_*.parquet")) if name in PARTITIONED else []


def _read_csv(data_dir: Path, name: str) -> pa.Table:
    return pacsv.read_csv(
        data_dir / f"{name}.csv",
        convert_options=pacsv.ConvertOptions(column_types=_CSV_TYPES[name], strings_can_be_null=True,
                                             true_values=["true"], false_values=["false"]),
    )


def _batches(data_dir: Path, name: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    if name not in PARTITIONED:
        yield from _read_csv(data_dir, name).to_batches(max_chunksize=chunk_rows)
        return
    for path in _files(data_dir, name):
        yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)


def _schema_of(data_dir: Path, name: str) -> tuple[pa.Schema, int]:
    if name not in PARTITIONED:
        table = _read_csv(data_dir, name)
        return table.schema, table.num_rows
    files = _files(data_dir, name)
    if not files:
        raise SourceError(f"no {name}_*.parquet files", where=str(data_dir / name))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return pq.read_schema(files[0]), rows


def _table(metadata: sa.MetaData, name: str, schema: pa.Schema, db_schema: str | None) -> sa.Table:
    columns = [sa.Column(f.name, _sql_type(f.type), primary_key=f.name == PRIMARY_KEYS.get(name),
                         autoincrement=False, nullable=f.name != PRIMARY_KEYS.get(name))
               for f in schema]
    return sa.Table(name, metadata, *columns, schema=db_schema, mysql_charset="utf8mb4")


def _safe(url: URL, message: str) -> str:
    if url.password:
        message = message.replace(str(url.password), "***")
    return message.strip().splitlines()[0] if message.strip() else message


def _error_text(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc)


def _copy_postgres(conn: Connection, table: sa.Table, batches: Iterator[pa.RecordBatch],
                   advance: Callable[[int], None]) -> None:
    from psycopg import sql

    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
    target = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(target, names)
    driver = conn.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for batch in batches:
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getvalue())
            advance(batch.num_rows)


def _insert_mysql(conn: Connection, table: sa.Table, batches: Iterator[pa.RecordBatch],
                  advance: Callable[[int], None]) -> None:
    quote = conn.dialect.identifier_preparer.quote
    target = f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)
    columns = ", ".join(quote(c.name) for c in table.columns)
    statement = f"INSERT INTO {target} ({columns}) VALUES ({', '.join(['%s'] * len(table.columns))})"
    cursor = conn.connection.driver_connection.cursor()
    try:
        for batch in batches:
            rows = list(zip(*(col.to_pylist() for col in batch.columns), strict=True))
            for start in range(0, len(rows), 10_000):  # pymysql folds each call into multi-row INSERTs
                cursor.executemany(statement, rows[start:start + 10_000])
            advance(batch.num_rows)
    finally:
        cursor.close()


def load_into(url: str, data_dir: Path, *, schema: str | None = None,
              progress: Callable[[str, float], None] | None = None, chunk_rows: int = 200_000) -> dict:
    """Replace the demo tables in the server at ``url`` with the files in ``data_dir``.

    ``schema`` is the PostgreSQL schema or MariaDB/MySQL database (default: the URL's own).
    Returns ``{"url", "schema", "tables": {name: rows}, "seconds"}``.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise SourceError(f"not a valid database URL: {type(exc).__name__}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise SourceError(f"load_into supports PostgreSQL and MariaDB/MySQL, not {backend!r}", where=shown)
    data_dir = _resolve_data_dir(data_dir)
    shapes = {name: _schema_of(data_dir, name) for name in TABLES}
    total = max(1, sum(rows for _, rows in shapes.values()))
    done = 0

    try:
        engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool)
    except Exception as exc:  # missing driver, bad options
        raise SourceError(_safe(parsed, f"cannot use {shown}: {exc}")) from None
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise SourceError(_safe(parsed, f"cannot connect to {shown}: {_error_text(exc)}")) from None

    loaded: dict[str, int] = {}
    current = ""
    try:
        with conn:
            if schema:
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                if backend != "postgresql":
                    conn.commit()
            for name in TABLES:
                current = name
                arrow_schema, rows = shapes[name]
                table = _table(sa.MetaData(), name, arrow_schema, schema)
                table.drop(conn, checkfirst=True)
                table.create(conn)

                def advance(n: int, name: str = name) -> None:
                    nonlocal done
                    done += n
                    report(f"load {name}", done / total)

                batches = _batches(data_dir, name, chunk_rows)
                if backend == "postgresql":
                    _copy_postgres(conn, table, batches, advance)
                else:
                    _insert_mysql(conn, table, batches, advance)
                if name in PARTITIONED:
                    time_column = PARTITIONED[name]
                    sa.Index(f"ix_{name}_{time_column}", table.c[time_column]).create(conn)
                if backend != "postgresql":
                    conn.commit()
                loaded[name] = rows
            conn.commit()
    except sa.exc.DBAPIError as exc:
        raise SourceError(_safe(parsed, f"loading {current!r} failed: {_error_text(exc)}"), where=shown) from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("psycopg", "pymysql"):
            raise SourceError(_safe(parsed, f"loading {current!r} failed: {exc}"), where=shown) from None
        raise
    finally:
        engine.dispose()
    report("done", 1.0)
    return {"url": shown, "schema": schema, "tables": loaded, "seconds": round(time.perf_counter() - started, 2)}
