"""The secret key check: a fingerprint of the key the stored secrets are encrypted with.

One table, ``asyncevents_secret_key_check``, of one row (name ``secret_key``):
the fingerprint (an HMAC-SHA256 of a fixed label under the key, which
reveals nothing of the key). It is written by the first process that stores
a secret or starts ``serve``/``worker`` with a key, after checking that key
against a secret already stored, and by ``asyncevents rotate-key``; a
process with another key is then refused at start. Nothing else changes:
secrets stored in clear stay as they are until ``rotate-key`` encrypts them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLE = "asyncevents_secret_key_check"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_asyncevents_secret_key_check"),
    )


def downgrade() -> None:
    op.drop_table(_TABLE)
