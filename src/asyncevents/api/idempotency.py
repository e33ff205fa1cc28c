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

from asyncevents.api.problems import Problem
from asyncevents.core.clock import utcnow
from asyncevents.core.store import IDEMPOTENCY_PENDING, Store

__all__ = ["KEY_TTL", "MAX_KEY_LENGTH", "check_key", "publish_once"]

KEY_TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# A key still pending after this long belongs to a process that died mid-publish.
_ABANDONED = timedelta(minutes=5)


def check_key(key: str) -> str:
    """The key if it is usable, else a 422 problem naming the header."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(422, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable "
                           "characters", field="idempotency-key")
    return key


def publish_once(store: Store, key: str, publish: Callable[[], str]) -> tuple[str, bool]:
    """Run ``publish`` unless ``key`` was used in the last 24 h; return (event id, duplicate)."""
    check_key(key)
    store.expire_idempotency_keys(utcnow() - KEY_TTL)  # expired keys are free again
    for _ in range(3):
        if store.claim_idempotency_key(key):
            break
        event_id = store.idempotency_key_event(key, abandoned_after=_ABANDONED)
        if event_id == IDEMPOTENCY_PENDING:
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
        store.release_idempotency_key(key)
        raise
    store.complete_idempotency_key(key, event_id)
    return event_id, False
