"""The store: the only door to the database.

One facade, :class:`Store`, whose queries live in a module per concept:
``subscriptions``, ``deliveries``, ``attempts``, ``search``, ``tokens`` (API
tokens), ``idempotency`` (publish keys), ``metrics`` and ``workers`` (live
workers), ``health`` (each subscription's circuit), ``keycheck`` (the
fingerprint of the secrets' key); ``schedule`` holds the retry
schedule; ``outbox`` the transactional
outbox, a table in the application's own database. Callers import from this
package only.
"""

from asyncevents.core.store.attempts import NewAttempt
from asyncevents.core.store.crypto import (
    GENERATE_KEY,
    KEY_FILE,
    MISSING_KEY,
    TokenCipher,
    key_file_for,
    needs_secret_key,
    replacing_key_file,
    store_cipher,
)
from asyncevents.core.store.deliveries import EventTargets
from asyncevents.core.store.health import CircuitHealth, CircuitPolicy, HealthChange, Outcome
from asyncevents.core.store.idempotency import IDEMPOTENCY_PENDING, IdempotencyRecord
from asyncevents.core.store.limits import Admission, Ordered, Wanted, ordering_value
from asyncevents.core.store.metrics import AttemptDurations
from asyncevents.core.store.outbox import (
    OUTBOX_TABLE,
    OutboxRow,
    add_to_outbox,
    outbox_engine,
    parse_database_url,
    same_database,
    take_from_outbox,
)
from asyncevents.core.store.schedule import Schedule, ScheduledRow
from asyncevents.core.store.store import Store
from asyncevents.core.store.tokens import ApiTokenRow
from asyncevents.core.store.workers import WorkerInfo

__all__ = [
    "GENERATE_KEY",
    "IDEMPOTENCY_PENDING",
    "KEY_FILE",
    "MISSING_KEY",
    "OUTBOX_TABLE",
    "Admission",
    "ApiTokenRow",
    "AttemptDurations",
    "CircuitHealth",
    "CircuitPolicy",
    "EventTargets",
    "HealthChange",
    "IdempotencyRecord",
    "NewAttempt",
    "Ordered",
    "OutboxRow",
    "Outcome",
    "Schedule",
    "ScheduledRow",
    "Store",
    "TokenCipher",
    "Wanted",
    "WorkerInfo",
    "add_to_outbox",
    "key_file_for",
    "needs_secret_key",
    "ordering_value",
    "outbox_engine",
    "parse_database_url",
    "replacing_key_file",
    "same_database",
    "store_cipher",
    "take_from_outbox",
]
