"""The store: subscriptions, deliveries, attempts and the retry schedule."""

from asyncevents.core.store.store import Store

__all__ = ["Store"]
