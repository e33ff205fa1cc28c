"""Idempotency keys of publish requests: claimed, completed with an event id, expired.

A key belongs to a scope (the API token that sent it) and remembers the
fingerprint of the request it was first used with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import idempotency_keys

__all__ = ["IDEMPOTENCY_PENDING", "IdempotencyQueries", "IdempotencyRecord"]

IDEMPOTENCY_PENDING: Final = ""
"""The event id of a claimed key whose publish is still running."""

_T = idempotency_keys.c


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a claimed key holds: the request's fingerprint and its event id (or pending)."""

    fingerprint: str
    event_id: str


class IdempotencyQueries(StoreBase):
    """The store's idempotency keys."""

    def expire_idempotency_keys(self, before: datetime) -> None:
        """Free every key claimed before ``before`` (an indexed delete, cheap)."""
        with self.begin() as conn:
            conn.execute(delete(idempotency_keys).where(_T.created_at < before))

    def claim_idempotency_key(self, scope: str, key: str, fingerprint: str) -> bool:
        """Claim ``key`` of ``scope`` as pending; ``False`` when someone holds it already."""
        try:
            with self.begin() as conn:
                conn.execute(insert(idempotency_keys).values(
                    scope=scope, key=key, fingerprint=fingerprint,
                    event_id=IDEMPOTENCY_PENDING, created_at=utcnow()))
        except IntegrityError:
            return False
        return True

    def idempotency_record(self, scope: str, key: str, *,
                           abandoned_after: timedelta) -> IdempotencyRecord | None:
        """What ``key`` of ``scope`` holds; ``None`` when it is free (again).

        The event id is ``IDEMPOTENCY_PENDING`` while its publish runs. A key
        pending for longer than ``abandoned_after`` belongs to a process that
        died mid-publish: it is freed, and ``None`` returned.
        """
        mine = (_T.scope == scope, _T.key == key)
        with self.begin() as conn:
            row = conn.execute(select(_T.fingerprint, _T.event_id, _T.created_at)
                               .where(*mine)).first()
            if row is None:
                return None
            fingerprint, event_id, created_at = row
            if event_id == IDEMPOTENCY_PENDING and utcnow() - created_at > abandoned_after:
                conn.execute(delete(idempotency_keys).where(
                    *mine, _T.event_id == IDEMPOTENCY_PENDING))
                return None
        return IdempotencyRecord(str(fingerprint), str(event_id))

    def complete_idempotency_key(self, scope: str, key: str, event_id: str) -> None:
        """Record the event that the publish under ``key`` sent."""
        with self.begin() as conn:
            conn.execute(update(idempotency_keys).where(_T.scope == scope, _T.key == key)
                         .values(event_id=event_id))

    def release_idempotency_key(self, scope: str, key: str) -> None:
        """Free ``key`` (its publish failed; the client may try again)."""
        with self.begin() as conn:
            conn.execute(delete(idempotency_keys).where(_T.scope == scope, _T.key == key))
