"""Alembic environment: runs on the connection asyncevents hands in."""

from __future__ import annotations

from alembic import context

from asyncevents.core.store.schema import metadata, only_elsewhere

connection = context.config.attributes["connection"]


def include_object(obj: object, name: str | None, type_: str, reflected: bool,
                   compare_to: object) -> bool:
    # The queue table of the SQL transport may share this database: not ours.
    if type_ == "table" and reflected and name not in metadata.tables:
        return False
    # An index made only on another database (the PostgreSQL payload index).
    return not (type_ == "index" and not reflected
                and only_elsewhere(name, connection.dialect.name))


context.configure(connection=connection, target_metadata=metadata,
                  version_table="asyncevents_alembic_version", include_object=include_object)
with context.begin_transaction():
    context.run_migrations()
