"""Subscriptions, deliveries, attempts and the retry schedule.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import Json, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asyncevents_subscription",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event_name", sa.String(255), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(2048), nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("filter", sa.Text, nullable=True),
        sa.Column("retry_policy", Json, nullable=True),
        sa.Column("metadata", Json, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_subscription"),
    )
    op.create_index("ix_asyncevents_subscription_active", "asyncevents_subscription", ["active"])
    op.create_table(
        "asyncevents_delivery",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_name", sa.String(255), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("published_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_delivery"),
        sa.UniqueConstraint(
            "event_id", "subscription_id", name="uq_asyncevents_delivery_event_id_subscription_id"
        ),
    )
    for column in ("status", "event_name", "subscription_id", "created_at"):
        op.create_index(f"ix_asyncevents_delivery_{column}", "asyncevents_delivery", [column])
    op.create_table(
        "asyncevents_attempt",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("replay", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_attempt"),
    )
    op.create_index(
        "ix_asyncevents_attempt_delivery_id_number", "asyncevents_attempt",
        ["delivery_id", "number"],
    )
    op.create_table(
        "asyncevents_schedule",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_schedule"),
    )
    op.create_index("ix_asyncevents_schedule_due_at", "asyncevents_schedule", ["due_at"])


def downgrade() -> None:
    op.drop_table("asyncevents_schedule")
    op.drop_table("asyncevents_attempt")
    op.drop_table("asyncevents_delivery")
    op.drop_table("asyncevents_subscription")
