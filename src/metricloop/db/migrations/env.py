"""Alembic environment: the engine is handed in by metricloop.db.engine.migrate."""

from alembic import context

from metricloop.db.all_models import metadata

target_metadata = metadata
engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
