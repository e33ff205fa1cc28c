"""Idempotency keys per API token, with the fingerprint of the request they were used with.

The key's primary key becomes ``(scope, key)``, ``scope`` being the API
token's id, so two clients may use the same key independently; the
``fingerprint`` (SHA-256 of the request) lets a reused key with another
body be refused. The table is a 24-hour cache of publish answers: it is
made again empty rather than converted, since keys seen before belonged to
no token. A request retried across the upgrade publishes once more.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLE = "asyncevents_idempotency"
_INDEX = "ix_asyncevents_idempotency_created_at"


def _create(*columns: sa.Column[object], primary_key: list[str]) -> None:
    op.create_table(
        _TABLE, *columns,
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint(*primary_key, name="pk_asyncevents_idempotency"),
    )
    op.create_index(_INDEX, _TABLE, ["created_at"])


def upgrade() -> None:
    op.drop_table(_TABLE)
    _create(sa.Column("scope", sa.String(36), nullable=False),
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            primary_key=["scope", "key"])


def downgrade() -> None:
    op.drop_table(_TABLE)
    _create(sa.Column("key", sa.String(255), nullable=False), primary_key=["key"])
