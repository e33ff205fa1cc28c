"""The store: subscriptions, deliveries, attempts and the retry schedule."""

from asyncevents.core.store.store import NewAttempt, Store

__all__ = ["NewAttempt", "Store"]
