"""A GIN ``jsonb_path_ops`` index on the delivery payload (PostgreSQL only).

Exact ``data.`` search terms compile to ``payload @? jsonpath`` beside the exact
test; this index answers it, so such a search reads the matching rows only
instead of every payload.

The payload must be ``jsonb``: it is on every database created by 0001 (the
``Json`` type). A column found as ``json`` (made by hand) is converted first,
``USING payload::jsonb``; that keeps every value (jsonb drops insignificant
whitespace, orders keys and keeps the last of duplicate keys, which is what
every reader of the payload already sees) but rewrites the table under an
exclusive lock.

Building the index takes a ``SHARE`` lock on the deliveries table: writes wait
until it is built (tens of seconds per million rows). To avoid that on a large
table, build it first without blocking writes, under the same name::

    CREATE INDEX CONCURRENTLY ix_asyncevents_delivery_payload
        ON asyncevents_delivery USING gin (payload jsonb_path_ops);

and this migration keeps it (an invalid one, left by a failed concurrent
build, is dropped and built again).

Other databases: nothing changes (their search scans payloads as before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = "asyncevents_delivery"
INDEX = "ix_asyncevents_delivery_payload"


def _payload_type(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = :table AND column_name = 'payload'"), {"table": TABLE}).scalar_one())


def _index_valid(conn: sa.Connection) -> bool | None:
    """True or False when the index exists (valid or not), ``None`` when it does not."""
    valid = conn.execute(sa.text(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"),
        {"name": INDEX}).scalar_one_or_none()
    return None if valid is None else bool(valid)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    if _payload_type(conn) == "json":
        op.alter_column(TABLE, "payload", type_=postgresql.JSONB(), existing_nullable=False,
                        postgresql_using="payload::jsonb")
    valid = _index_valid(conn)
    if valid:
        return
    if valid is False:
        op.drop_index(INDEX, table_name=TABLE)
    op.create_index(INDEX, TABLE, ["payload"], postgresql_using="gin",
                    postgresql_ops={"payload": "jsonb_path_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name=TABLE)
