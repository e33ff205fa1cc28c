"""API tokens and publish idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import Json, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asyncevents_api_token",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_api_token"),
        sa.UniqueConstraint("token_hash", name="uq_asyncevents_api_token_token_hash"),
    )
    op.create_table(
        "asyncevents_idempotency",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_asyncevents_idempotency"),
    )
    op.create_index("ix_asyncevents_idempotency_created_at", "asyncevents_idempotency",
                    ["created_at"])


def downgrade() -> None:
    op.drop_table("asyncevents_idempotency")
    op.drop_table("asyncevents_api_token")
