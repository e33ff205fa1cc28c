"""The store's tables (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql, postgresql

__all__ = [
    "Json",
    "UTCDateTime",
    "api_tokens",
    "attempts",
    "console_sessions",
    "deliveries",
    "idempotency_keys",
    "in_flight",
    "metadata",
    "only_elsewhere",
    "schedule",
    "secret_key_check",
    "subscription_health",
    "subscriptions",
    "workers",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database.

    Stored naive in UTC because SQLite and MySQL keep no zone; MySQL needs
    ``fsp=6`` or it drops the microseconds that order attempts.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """Microsecond precision on MySQL/MariaDB."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use asyncevents.core.clock")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


#: JSON columns: ``jsonb`` on PostgreSQL (indexable, and what search compiles for),
#: JSON elsewhere. The delivery payload has been ``jsonb`` since migration 0001.
Json = JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

subscriptions = Table(
    "asyncevents_subscription",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_name", String(255), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("recipient", String(2048), nullable=False),
    Column("token", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("filter", Text, nullable=True),
    Column("retry_policy", Json, nullable=True),
    Column("metadata", Json, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    # Receiver protection (migration 0006): rate, max_in_flight, ordering_key, signature,
    # headers, disable_after, public_key, as one JSON object.
    Column("options", Json, nullable=True),
    # Encrypted like the token: the Ed25519 private key, and the token a rotation
    # replaced, which still signs until previous_token_until.
    Column("signing_key", Text, nullable=True),
    Column("previous_token", Text, nullable=True),
    Column("previous_token_until", UTCDateTime, nullable=True),
    Index(None, "active"),
)

deliveries = Table(
    "asyncevents_delivery",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("event_name", String(255), nullable=False),
    Column("subscription_id", String(36), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("recipient", String(2048), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("payload", Json, nullable=False),
    Column("published_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    # The value of the subscription's ordering key in the payload (migration 0006).
    Column("ordering_key", String(255), nullable=True),
    UniqueConstraint("event_id", "subscription_id"),
    Index(None, "status"),
    Index(None, "event_name"),
    Index(None, "subscription_id"),
    Index(None, "created_at"),
    Index(None, "subscription_id", "ordering_key"),
    # Exact `data.` search terms (`payload @? jsonpath`), PostgreSQL only: migration 0004.
    Index("ix_asyncevents_delivery_payload", "payload", postgresql_using="gin",
          postgresql_ops={"payload": "jsonb_path_ops"}).ddl_if(dialect="postgresql"),
)

attempts = Table(
    "asyncevents_attempt",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False),
    Column("number", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", Text, nullable=False, default=""),
    Column("error", Text, nullable=True),
    Column("replay", Boolean, nullable=False, default=False),
    Index(None, "delivery_id", "number"),
)

schedule = Table(
    "asyncevents_schedule",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("due_at", UTCDateTime, nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Index(None, "due_at"),
)

api_tokens = Table(
    "asyncevents_api_token",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    # SHA-256 of the bearer token: the token itself is shown once and never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # Migration 0007: when set, the token is refused from then on, like a revoked one.
    Column("expires_at", UTCDateTime, nullable=True),
)

console_sessions = Table(
    "asyncevents_console_session",
    metadata,
    # A console login kept on the server (migration 0007). The id is the SHA-256 of the
    # random session id in the cookie, which itself is never stored; logout deletes the
    # row, revoking the token it was opened with ends it.
    Column("id", String(64), primary_key=True),
    Column("token_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The idle lifetime counts from here; expires_at is the absolute end.
    Column("last_seen", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "token_id"),
    Index(None, "expires_at"),
)

idempotency_keys = Table(
    "asyncevents_idempotency",
    metadata,
    # Whose key it is (the API token's id): two clients may pick the same key.
    Column("scope", String(36), primary_key=True),
    Column("key", String(255), primary_key=True),
    # SHA-256 of the request the key was first used with: reusing it for another is an error.
    Column("fingerprint", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "created_at"),
)

workers = Table(
    "asyncevents_worker",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", Json, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("in_flight", Integer, nullable=False, default=0),
    Column("handled", Integer, nullable=False, default=0),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    # Set by `asyncevents stop-workers`: the worker finishes what it holds and exits.
    Column("stop_requested_at", UTCDateTime, nullable=True),
    Index(None, "heartbeat_at"),
)


subscription_health = Table(
    "asyncevents_subscription_health",
    metadata,
    # One row per subscription, shared by every worker: its circuit and its rate limit.
    Column("subscription_id", String(36), primary_key=True),
    Column("state", String(16), nullable=False, default="closed"),
    Column("opened_at", UTCDateTime, nullable=True),
    # While set and in the future, one probe is out and no other delivery goes.
    Column("probe_until", UTCDateTime, nullable=True),
    Column("window_started_at", UTCDateTime, nullable=True),
    Column("window_attempts", Integer, nullable=False, default=0),
    Column("window_failures", Integer, nullable=False, default=0),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UTCDateTime, nullable=True),
    Column("last_success_at", UTCDateTime, nullable=True),
    Column("failing_since", UTCDateTime, nullable=True),
    # The token bucket of the rate limit.
    Column("tokens", Float, nullable=True),
    Column("tokens_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

in_flight = Table(
    "asyncevents_in_flight",
    metadata,
    # A delivery being attempted, for max_in_flight across workers; a crashed
    # worker's rows stop counting when their lease ends.
    Column("delivery_id", String(36), primary_key=True),
    Column("subscription_id", String(36), nullable=False),
    Column("lease_until", UTCDateTime, nullable=False),
    Index(None, "subscription_id"),
)

secret_key_check = Table(
    "asyncevents_secret_key_check",
    metadata,
    # One row (name "secret_key", migration 0008): the fingerprint of the key the
    # stored secrets are encrypted with (an HMAC of a fixed label, not the key), so a
    # process with another key is refused at start instead of failing every delivery.
    Column("name", String(32), primary_key=True),
    Column("fingerprint", String(128), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


def only_elsewhere(index_name: str | None, dialect: str) -> bool:
    """True for an index this schema makes only on another database than ``dialect``.

    Alembic's comparison ignores ``ddl_if``: without this it would report the
    PostgreSQL-only payload index as missing on SQLite and MySQL.
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            if index.name == index_name:
                condition = getattr(index, "_ddl_if", None)
                wanted = getattr(condition, "dialect", None)
                return wanted is not None and wanted != dialect
    return False
