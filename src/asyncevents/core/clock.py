"""Time, always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["naive_utcnow", "utcnow"]


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def naive_utcnow() -> datetime:
    """The current time in UTC without a zone: what the queue table's columns hold."""
    return datetime.now(UTC).replace(tzinfo=None)
