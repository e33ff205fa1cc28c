"""Alembic environment: runs on the connection asyncevents hands in."""

from __future__ import annotations

from alembic import context

from asyncevents.core.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  version_table="asyncevents_alembic_version")
with context.begin_transaction():
    context.run_migrations()
