"""Alembic environment: the service passes its open connection (``db.migrate``)."""

from alembic import context

from pipeline.serve.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
