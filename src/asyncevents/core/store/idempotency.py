"""Idempotency keys of publish requests: claimed, completed with an event id, expired."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import idempotency_keys

__all__ = ["IDEMPOTENCY_PENDING", "IdempotencyQueries"]

IDEMPOTENCY_PENDING: Final = ""
"""The event id of a claimed key whose publish is still running."""


class IdempotencyQueries(StoreBase):
    """The store's idempotency keys."""

    def expire_idempotency_keys(self, before: datetime) -> None:
        """Free every key claimed before ``before`` (an indexed delete, cheap)."""
        with self.begin() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < before))

    def claim_idempotency_key(self, key: str) -> bool:
        """Claim ``key`` as pending; ``False`` when someone holds it already."""
        try:
            with self.begin() as conn:
                conn.execute(insert(idempotency_keys).values(
                    key=key, event_id=IDEMPOTENCY_PENDING, created_at=utcnow()))
        except IntegrityError:
            return False
        return True

    def idempotency_key_event(self, key: str, *, abandoned_after: timedelta) -> str | None:
        """The event id stored for ``key``.

        ``None`` when the key is free (again), ``IDEMPOTENCY_PENDING`` while its
        publish runs. A key pending for longer than ``abandoned_after`` belongs
        to a process that died mid-publish: it is freed, and ``None`` returned.
        """
        with self.begin() as conn:
            row = conn.execute(
                select(idempotency_keys.c.event_id, idempotency_keys.c.created_at)
                .where(idempotency_keys.c.key == key)
            ).first()
            if row is None:
                return None
            event_id, created_at = row
            if event_id == IDEMPOTENCY_PENDING and utcnow() - created_at > abandoned_after:
                conn.execute(delete(idempotency_keys).where(
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.event_id == IDEMPOTENCY_PENDING))
                return None
        return str(event_id)

    def complete_idempotency_key(self, key: str, event_id: str) -> None:
        """Record the event that the publish under ``key`` sent."""
        with self.begin() as conn:
            conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == key)
                         .values(event_id=event_id))

    def release_idempotency_key(self, key: str) -> None:
        """Free ``key`` (its publish failed; the client may try again)."""
        with self.begin() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key == key))
