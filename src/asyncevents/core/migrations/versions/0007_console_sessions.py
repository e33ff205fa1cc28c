"""Console sessions and API token expiry.

One table, ``asyncevents_console_session``: a console login, kept on the
server. Its ``id`` is the SHA-256 of the random 256-bit session id the
cookie carries (the cookie's value is never stored), ``token_id`` the API
token it was opened with (revoking the token ends its sessions),
``created_at``, ``last_seen`` (the idle lifetime counts from it) and
``expires_at`` (the absolute lifetime). API tokens gain ``expires_at``: an
expired token is refused like a revoked one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from asyncevents.core.store.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SESSION = "asyncevents_console_session"
_TOKEN = "asyncevents_api_token"


def upgrade() -> None:
    op.create_table(
        _SESSION,
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_asyncevents_console_session"),
    )
    op.create_index("ix_asyncevents_console_session_token_id", _SESSION, ["token_id"])
    op.create_index("ix_asyncevents_console_session_expires_at", _SESSION, ["expires_at"])
    with op.batch_alter_table(_TOKEN) as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(_TOKEN) as batch:
        batch.drop_column("expires_at")
    op.drop_table(_SESSION)
