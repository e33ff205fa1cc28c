"""A worker's presence: its entry in the store's list of live workers, and ``stop-workers``."""

from __future__ import annotations

import os
import socket
import uuid

import structlog

from asyncevents.core.messages import Route
from asyncevents.core.store import Store
from asyncevents.errors import AsyncEventsError

__all__ = ["Presence"]

log = structlog.get_logger("asyncevents.worker")


class Presence:
    """The worker's entry in the store's list of live workers (``asyncevents workers``).

    A store that cannot be reached never stops the worker: the entry is only
    a report, and the next beat tries again. :meth:`beat` runs on the worker's
    housekeeping thread, :meth:`leave` once the worker has stopped it.
    """

    #: Seconds between heartbeats.
    every = 5.0

    def __init__(self, store: Store, routes: list[Route], concurrency: int) -> None:
        self.store = store
        self.id = str(uuid.uuid4())
        self.routes = routes
        self.concurrency = concurrency
        #: The named queues the worker consumes; None for ``default`` alone
        #: (listed by route then, as before named queues).
        self.queues: list[str] | None = None
        self._registered = False

    def beat(self, in_flight: int, handled: int) -> bool:
        """Register or refresh the entry; True when ``stop-workers`` asked us to stop."""
        try:
            if not self._registered:
                self.store.register_worker(self.id, host=socket.gethostname(), pid=os.getpid(),
                                           queues=list(self.queues or self.routes),
                                           concurrency=self.concurrency)
                self._registered = True
                return False
            return self.store.worker_heartbeat(self.id, in_flight=in_flight, handled=handled)
        except AsyncEventsError as exc:
            log.warning("cannot record this worker's heartbeat", error=str(exc))
            return False

    def leave(self) -> None:
        """Remove the entry."""
        if self._registered:
            try:
                self.store.unregister_worker(self.id)
            except AsyncEventsError as exc:
                log.warning("cannot remove this worker's entry", error=str(exc))
