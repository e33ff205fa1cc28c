"""Publish idempotency: the same ``Idempotency-Key`` within 24 hours publishes once.

Keys belong to the API token that sends them, so two clients may pick the
same key without meeting. The key is claimed first (an insert that only one
request can win) together with the request's fingerprint, then the event is
published and its id written next to the key. A second request with the key
and the same body gets the first event id back and publishes nothing; one
with another body is refused with a 422 naming the key (as payment APIs do:
a reused key is a client bug, not a retry); one that arrives while the first
is still publishing gets a 409 and may retry. A publish that fails releases
its key, so the client can simply try again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from asyncevents.api.problems import Problem
from asyncevents.core.clock import utcnow
from asyncevents.core.store import IDEMPOTENCY_PENDING, Store

__all__ = ["KEY_TTL", "MAX_KEY_LENGTH", "check_key", "fingerprint", "publish_once"]

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


def fingerprint(request: Any) -> str:
    """The SHA-256 of a request's canonical JSON: the same for the same fields and values."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _reused(key: str) -> Problem:
    return Problem(422, f"Idempotency-Key {key!r} was already used with a different request "
                        "in the last 24 hours; send a new key for a new event",
                   kind="idempotency-key-reused", field="idempotency-key")


def publish_once(store: Store, key: str, publish: Callable[[], str], *, scope: str,
                 request: Any) -> tuple[str, bool]:
    """Run ``publish`` unless ``scope`` used ``key`` in the last 24 h; return (event id, duplicate).

    ``request`` is what the key stands for (the parsed body): a key used
    again with another one is a 422 problem.
    """
    check_key(key)
    mine = fingerprint(request)
    store.expire_idempotency_keys(utcnow() - KEY_TTL)  # expired keys are free again
    for _ in range(3):
        if store.claim_idempotency_key(scope, key, mine):
            break
        record = store.idempotency_record(scope, key, abandoned_after=_ABANDONED)
        if record is None:
            continue  # freed meanwhile: claim it again
        if record.fingerprint != mine:
            raise _reused(key)
        if record.event_id == IDEMPOTENCY_PENDING:
            raise Problem(409, "a publish with this Idempotency-Key is still in progress; "
                               "retry shortly", kind="conflict", field="idempotency-key")
        return record.event_id, True
    else:
        raise Problem(409, "the Idempotency-Key is contended; retry shortly", kind="conflict",
                      field="idempotency-key")
    try:
        event_id = publish()
    except BaseException:
        store.release_idempotency_key(scope, key)
        raise
    store.complete_idempotency_key(scope, key, event_id)
    return event_id, False
