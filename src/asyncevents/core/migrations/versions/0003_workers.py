"""Live workers: host, pid, queues, in flight, last heartbeat.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import Json, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asyncevents_worker",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", Json, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("handled", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.Column("stop_requested_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_worker"),
    )
    op.create_index("ix_asyncevents_worker_heartbeat_at", "asyncevents_worker",
                    ["heartbeat_at"])


def downgrade() -> None:
    op.drop_table("asyncevents_worker")
