"""A worker's presence: its entry in the store's list of live workers, ``stop-workers``,
and, on the SQL queue, the leases of workers whose presence went silent.

A worker beats every :attr:`Presence.every` seconds; one silent for
:data:`SILENT_BEATS` beats (:data:`GONE_AFTER` seconds at the defaults) is
gone (``asyncevents workers`` says so). On the SQL queue every row names the
worker that leased it, so the others can tell a dead worker's messages from a
live one's (:class:`Leases`):

- housekeeping reclaims the leases of gone workers: their rows are due again
  at once, instead of at the end of a lease that may be long;
- ``--max-idle-time`` and ``--burst`` do not take for idle a queue that
  holds messages of a worker that has not beaten since the idle worker
  first looked at them (a live one beats within one period; a killed one
  never again): the idle worker waits for them to come back and delivers
  them, rather than leaving them for the next run.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog

from asyncevents.core.clock import utcnow
from asyncevents.core.messages import Route
from asyncevents.core.retry.outage import OutageLog
from asyncevents.core.store import Store, same_database
from asyncevents.core.transport import Transport
from asyncevents.core.transport.sql.transport import SqlTransport
from asyncevents.errors import AsyncEventsError

__all__ = ["GONE_AFTER", "SILENT_BEATS", "Leases", "Presence"]

log = structlog.get_logger("asyncevents.worker")

#: Heartbeats a worker may miss before it counts as gone.
SILENT_BEATS = 3


class Presence:
    """The worker's entry in the store's list of live workers (``asyncevents workers``).

    A store that cannot be reached never stops the worker: the entry is only
    a report, and the next beat tries again (the store's outage is logged
    once, through :attr:`outage`). :meth:`beat` runs on the worker's
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
        #: Where a failed beat is told (the worker shares its engine's store outage).
        self.outage = OutageLog("store")
        self._registered = False

    @property
    def gone_after(self) -> float:
        """Seconds of silence after which a worker counts as gone."""
        return SILENT_BEATS * self.every

    def beat(self, in_flight: int, handled: int) -> bool:
        """Register or refresh the entry; True when ``stop-workers`` asked us to stop."""
        began = time.monotonic()
        try:
            if not self._registered:
                self.store.register_worker(self.id, host=socket.gethostname(), pid=os.getpid(),
                                           queues=list(self.queues or self.routes),
                                           concurrency=self.concurrency)
                self._registered = True
                asked = False
            else:
                asked = self.store.worker_heartbeat(self.id, in_flight=in_flight,
                                                    handled=handled)
        except AsyncEventsError as exc:
            self.outage.failed(exc, count=0)
            return False
        self.outage.recovered(began=began)
        return asked

    def leave(self) -> None:
        """Remove the entry."""
        if self._registered:
            try:
                self.store.unregister_worker(self.id)
            except AsyncEventsError as exc:
                log.warning("cannot remove this worker's entry", error=str(exc))


#: :attr:`Presence.gone_after` at the default heartbeat period (``asyncevents workers``).
GONE_AFTER = SILENT_BEATS * Presence.every

# The idle and burst looks ask the table at most this often (seconds).
_LOOK_EVERY = 0.5


class Leases:
    """The SQL queue's messages held by silent workers: reclaimed, and counted as waiting.

    Made by the worker when it consumes a SQL queue with a presence: the
    rows it leases carry its presence id (:attr:`SqlTransport.holder`).
    When the store's workers table is in the queue's database, both the
    reclaim and the count join it in the statement; otherwise the store is
    asked for the workers first.
    """

    def __init__(self, transport: SqlTransport, presence: Presence) -> None:
        self.transport = transport
        self.presence = presence
        transport.holder = presence.id
        self._here: bool | None = None
        # The idle period being looked at (the worker's last activity), and
        # when its first look was: a holder that has not beaten since is silent.
        self._period: float | None = None
        self._first_look: datetime = utcnow()
        self._next_look = 0.0
        self._orphans = 0

    @classmethod
    def of(cls, transport: Transport, presence: Presence | None) -> Leases | None:
        """Leases for a worker on ``transport`` (None unless a SQL queue and a presence)."""
        if presence is None or not isinstance(transport, SqlTransport):
            return None
        return cls(transport, presence)

    def _workers_here(self) -> bool:
        """True when the store's workers table is in the queue's database."""
        if self._here is None:
            self._here = same_database(self.presence.store.engine.url, self.transport.database)
        return self._here

    def reclaim(self) -> int:
        """Make the messages of gone workers due again now (a housekeeping task); how many.

        Gone: no heartbeat for :attr:`Presence.gone_after` seconds. One
        UPDATE per queue, joined against the workers table when it is in the
        queue's database.
        """
        before = utcnow() - timedelta(seconds=self.presence.gone_after)
        if self._workers_here():
            back = self.transport.reclaim_silent(before)
        else:
            silent = [w.id for w in self.presence.store.list_workers()
                      if w.heartbeat_at < before]
            back = self.transport.reclaim_silent(before, ids=silent) if silent else 0
        if back:
            log.warning("messages of a silent worker back in their queue", messages=back,
                        silent_for=f"more than {self.presence.gone_after:g} s")
        return back

    def orphaned(self, queues: Sequence[str], idle_since: float) -> int:
        """Messages of ``queues`` held by another worker that has not beaten since our first look.

        ``idle_since``: the worker's last activity (``time.monotonic()``); a
        new one starts a new idle period, whose first look counts every other
        worker's messages (none has beaten since); a live holder beats within
        one period and its messages stop counting. Asked at most every half
        second (the last count otherwise).
        """
        now = time.monotonic()
        if idle_since != self._period:
            self._period, self._first_look, self._next_look = idle_since, utcnow(), 0.0
        if now < self._next_look:
            return self._orphans
        self._next_look = now + _LOOK_EVERY
        names = [str(q.name) for q in self.transport.topology.queues_of(list(queues))]
        if self._workers_here():
            self._orphans = self.transport.orphaned(names, self._first_look)
        else:
            alive = [w.id for w in self.presence.store.list_workers()
                     if w.heartbeat_at >= self._first_look]
            self._orphans = self.transport.orphaned(names, self._first_look, alive_ids=alive)
        return self._orphans
