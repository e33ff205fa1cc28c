"""Receiver protection: subscription options, signing secrets, health and limits.

Subscriptions gain ``options`` (rate, max_in_flight, ordering_key,
signature, headers, disable_after, public_key as one JSON object),
``signing_key`` (the Ed25519 private key, encrypted like tokens),
``previous_token`` and ``previous_token_until`` (a rotated token still
signing during its grace). Deliveries gain ``ordering_key``. Two tables:
``asyncevents_subscription_health`` (each subscription's circuit and rate
limit bucket, shared by every worker) and ``asyncevents_in_flight`` (leases
counting the deliveries in flight for ``max_in_flight``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import Json, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SUB = "asyncevents_subscription"
_DELIVERY = "asyncevents_delivery"
_ORDERING_INDEX = "ix_asyncevents_delivery_subscription_id_ordering_key"


def upgrade() -> None:
    with op.batch_alter_table(_SUB) as batch:
        batch.add_column(sa.Column("options", Json, nullable=True))
        batch.add_column(sa.Column("signing_key", sa.Text, nullable=True))
        batch.add_column(sa.Column("previous_token", sa.Text, nullable=True))
        batch.add_column(sa.Column("previous_token_until", UTCDateTime, nullable=True))
    with op.batch_alter_table(_DELIVERY) as batch:
        batch.add_column(sa.Column("ordering_key", sa.String(255), nullable=True))
    op.create_index(_ORDERING_INDEX, _DELIVERY, ["subscription_id", "ordering_key"])
    op.create_table(
        "asyncevents_subscription_health",
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=True),
        sa.Column("probe_until", UTCDateTime, nullable=True),
        sa.Column("window_started_at", UTCDateTime, nullable=True),
        sa.Column("window_attempts", sa.Integer, nullable=False),
        sa.Column("window_failures", sa.Integer, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_error_at", UTCDateTime, nullable=True),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("failing_since", UTCDateTime, nullable=True),
        sa.Column("tokens", sa.Float, nullable=True),
        sa.Column("tokens_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", name="pk_asyncevents_subscription_health"),
    )
    op.create_table(
        "asyncevents_in_flight",
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("subscription_id", sa.String(36), nullable=False),
        sa.Column("lease_until", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name="pk_asyncevents_in_flight"),
    )
    op.create_index("ix_asyncevents_in_flight_subscription_id", "asyncevents_in_flight",
                    ["subscription_id"])


def downgrade() -> None:
    op.drop_table("asyncevents_in_flight")
    op.drop_table("asyncevents_subscription_health")
    op.drop_index(_ORDERING_INDEX, _DELIVERY)
    with op.batch_alter_table(_DELIVERY) as batch:
        batch.drop_column("ordering_key")
    with op.batch_alter_table(_SUB) as batch:
        batch.drop_column("previous_token_until")
        batch.drop_column("previous_token")
        batch.drop_column("signing_key")
        batch.drop_column("options")
