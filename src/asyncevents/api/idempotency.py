"""Publish idempotency: the same ``Idempotency-Key`` within 24 hours publishes once.

The key is claimed first (an insert that only one request can win), then
the event is published and its id written next to the key. A second request
with the key gets the first event id back and publishes nothing; one that
arrives while the first is still publishing gets a 409 and may retry. A
publish that fails releases its key, so the client can simply try again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from asyncevents.api.problems import Problem
from asyncevents.core.clock import utcnow
from asyncevents.core.store import Store
from asyncevents.core.store.schema import idempotency_keys

__all__ = ["KEY_TTL", "MAX_KEY_LENGTH", "check_key", "publish_once"]

KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
_PENDING = ""  # event_id of a key whose publish is still running
# A key still pending after this long belongs to a process that died mid-publish.
_ABANDONED = timedelta(minutes=5)


def _expire(store: Store) -> None:
    cutoff = utcnow() - KEY_TTL
    with store.begin() as conn:
        conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff))


def _claim(store: Store, key: str) -> bool:
    try:
        with store.begin() as conn:
            conn.execute(insert(idempotency_keys).values(key=key, event_id=_PENDING,
                                                         created_at=utcnow()))
    except IntegrityError:
        return False
    return True


def check_key(key: str) -> str:
    """The key if it is usable, else a 422 problem naming the header."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable "
                           "characters", field="idempotency-key")
    return key


def _existing(store: Store, key: str) -> str | None:
    """The event id stored for ``key``: None if the key is free again, ``_PENDING`` if busy."""
    with store.begin() as conn:
        row = conn.execute(
            select(idempotency_keys.c.event_id, idempotency_keys.c.created_at)
            .where(idempotency_keys.c.key == key)
        ).first()
        if row is None:
            return None
        event_id, created_at = row
        if event_id == _PENDING and utcnow() - created_at > _ABANDONED:
            # The process that claimed it died before publishing: free the key.
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key == key,
                                                        idempotency_keys.c.event_id == _PENDING))
            return None
    return str(event_id)


def publish_once(store: Store, key: str, publish: Callable[[], str]) -> tuple[str, bool]:
    """Run ``publish`` unless ``key`` was used in the last 24 h; return (event id, duplicate)."""
    check_key(key)
    _expire(store)  # expired keys are free again (an indexed delete, cheap)
    for _ in range(3):
        if _claim(store, key):
            break
        event_id = _existing(store, key)
        if event_id == _PENDING:
            raise Problem(409, "a publish with this Idempotency-Key is still in progress; "
                               "retry shortly", kind="conflict", field="idempotency-key")
        if event_id is not None:
            return event_id, True
    else:
        raise Problem(409, "the Idempotency-Key is contended; retry shortly", kind="conflict",
                      field="idempotency-key")
    try:
        event_id = publish()
    except BaseException:
        with store.begin() as conn:
            conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key == key))
        raise
    with store.begin() as conn:
        conn.execute(update(idempotency_keys).where(idempotency_keys.c.key == key)
                     .values(event_id=event_id))
    return event_id, False
