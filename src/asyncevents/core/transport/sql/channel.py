"""A crash-safe SQL transport for kombu (``sqla+<database url>``).

kombu's stock SQLAlchemy transport hides a row for good when it is fetched, so
a consumer killed before its ack loses the message, and it never deletes a
row. Here a fetch *leases* a row (:mod:`~asyncevents.core.transport.sql.schema`
has the table): it comes back by itself when the lease runs out. An ack, or a
reject without requeue, deletes the row; a requeue, or kombu's restore of
unacked messages when a channel closes, makes the row visible again in its
original place, never as a copy. A consumer whose lease ran out and whose row
was claimed again can neither ack nor requeue the new holder's lease.

Use :func:`connection`. ``kombu.Connection("sqla+...", transport=SqlTransport)``
does *not* work: kombu takes the transport from the URL prefix and silently
drops the ``transport`` argument; :class:`SqlConnection` maps the prefix back.

A message published with the :data:`DELAY_HEADER` header (seconds) is
inserted with ``visible_at`` that far in the future: a delay is a row that
is not ready yet, no second table.

Transport options: ``polling_interval`` (seconds between polls of an empty
queue), ``lease_seconds`` (how long a claimed row stays invisible; a
consumer that holds it renews it with :meth:`LeasedSqlTransport.renew_leases`,
so a dead one's rows come back within one lease), ``claim_batch``
(rows a consumer claims per query, capped by its prefetch count; default 10)
``holder`` (the consuming worker's presence id, stored in each row it
leases: a worker whose heartbeat stopped has its leases reclaimed by the
others, see :func:`~asyncevents.core.transport.sql.schema.reclaim`) and
``engine_options`` (for :func:`sqlalchemy.create_engine`); nothing else
reaches ``create_engine``.

On PostgreSQL a publish also sends a NOTIFY, and a consumer with nothing to
do waits for one between its polls (:mod:`~asyncevents.core.transport.sql.wakeup`), so
a message reaches an idle consumer at once rather than at the next poll.

Fresh rows come out FIFO; a row whose lease ran out queues again from the
moment it became visible. Leases use the clients' clocks (naive UTC), so
hosts sharing a queue need synchronised clocks.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import timedelta
from queue import Empty
from time import monotonic
from typing import Any

import kombu
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.transport import virtual
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from asyncevents.core.transport.sql import schema
from asyncevents.core.transport.sql.schema import (
    TABLE_NAME,
    QueueEngines,
    dispose_engines,
    engine_url,
    get_engines,
    messages,
)
from asyncevents.core.transport.sql.wakeup import Wakeup

__all__ = [
    "DEFAULT_LEASE",
    "DELAY_HEADER",
    "TABLE_NAME",
    "LeasedSqlTransport",
    "QueueEngines",
    "SqlChannel",
    "SqlConnection",
    "connection",
    "dispose_engines",
    "engine_url",
    "get_engines",
    "messages",
]


#: Seconds a claimed row stays invisible unless its holder renews the lease.
DEFAULT_LEASE = 10.0

#: A message header holding a delay in seconds (removed before the row is stored).
DELAY_HEADER = "x-asyncevents-delay"

# Seconds a consumed queue found empty is left alone while others are busy.
_RECHECK_EMPTY = 0.025


class SqlChannel(virtual.Channel):  # type: ignore[misc]
    """A kombu channel whose queues are rows of :data:`messages`."""

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._engines: QueueEngines = connection.engines
        self._lease = timedelta(seconds=connection.lease_seconds)
        self._claim_batch: int = connection.claim_batch
        # Who holds what this channel claims (a worker's presence id), or None.
        self._holder: str | None = connection.holder
        # delivery_tag -> (row id, delivery count); shared by the transport's
        # channels, since kombu may reject a message on another channel.
        self._leases: dict[str, tuple[int, int]] = connection.leases
        # Rows claimed for a consumer but not delivered yet, and until when
        # (monotonic) they are fresh enough to deliver.
        self._claimed: dict[str, tuple[deque[tuple[int, str, int]], float]] = {}
        # kombu polls the consumed queues in turn, each time one yields a
        # message: without this, every message of a busy queue would cost an
        # empty claim on each idle one. A consumed queue found empty is not
        # asked again for this long (seconds), at most the polling interval.
        self._recheck = min(float(connection.polling_interval or 0.0), _RECHECK_EMPTY)
        self._empty_until: dict[str, float] = {}
        # Rows collected by batched_puts(), or None when publishing one by one.
        self._batch: list[dict[str, Any]] | None = None

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        now = schema.utcnow()
        delay = (message.get("headers") or {}).pop(DELAY_HEADER, None)
        visible = now + timedelta(seconds=float(delay)) if delay else now
        # created_at is when the row is due: a requeue puts it back there.
        row = {"queue": queue, "payload": json.dumps(message), "created_at": visible,
               "visible_at": visible, "deliveries": 0}
        if self._batch is not None:
            self._batch.append(row)
            return
        put = schema.PUT_AND_NOTIFY if self._engines.notify else schema.PUT
        schema.run(self._engines.put, lambda conn: conn.execute(put, row))

    @contextmanager
    def batched_puts(self) -> Iterator[None]:
        """Publishes inside collect their rows; all are inserted in one transaction at the end."""
        self._batch = []
        try:
            yield
            rows = self._batch
        finally:
            self._batch = None
        if rows:
            schema.run(self._engines.put, lambda conn: self._insert_many(conn, rows))

    def _insert_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.execute(schema.PUT, rows)
        if self._engines.notify:
            for queue in {row["queue"] for row in rows}:
                conn.execute(schema.NOTIFY, {"q": queue})

    def claimed_rows(self) -> list[tuple[int, int]]:
        """(row id, lease token) of the rows claimed here and not delivered yet."""
        return [(row_id, n) for rows, _ in self._claimed.values() for row_id, _, n in rows]

    def claimed_in(self, queues: Iterable[str]) -> int:
        """Rows of ``queues`` claimed here and not delivered yet (no longer counted as ready)."""
        return sum(len(self._claimed[queue][0]) for queue in queues if queue in self._claimed)

    def claims_renewed(self, fresh_until: float) -> None:
        """Claimed rows had their leases extended: they stay fresh until then (monotonic)."""
        self._claimed = {queue: (rows, max(fresh, fresh_until))
                         for queue, (rows, fresh) in self._claimed.items()}

    def forget_empty(self) -> None:
        """A message was published: poll every queue again at once."""
        self._empty_until.clear()

    def _batch_size(self, queue: str) -> int:
        if queue not in self._active_queues:
            return 1  # basic_get: no consumer to hand the others to
        room = self.qos.can_consume_max_estimate()
        return self._claim_batch if room is None else max(1, min(room, self._claim_batch))

    def _claim(self, conn: Connection, queue: str, k: int) -> list[tuple[int, str, int]]:
        now = schema.utcnow()
        params = {"q": queue, "now": now, "until": now + self._lease, "k": k,
                  "by": self._holder}
        if self._engines.claim_in_one_statement:
            return sorted((r[0], r[1], r[2]) for r in conn.execute(schema.CLAIM, params))
        rows = conn.execute(schema.PICK, params).all()
        if rows:
            conn.execute(schema.LEASE, {"ids": [r[0] for r in rows], "until": params["until"],
                                        "by": self._holder})
        return [(r[0], r[1], r[2] + 1) for r in rows]

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        claimed, fresh_until = self._claimed.pop(queue, (None, 0.0))
        if claimed and monotonic() > fresh_until:
            self._unclaim(claimed)  # half the lease is gone: start over
            claimed = None
        if not claimed:
            consumed = queue in self._active_queues
            if consumed and monotonic() < self._empty_until.get(queue, 0.0):
                raise Empty()  # found empty a moment ago (see __init__)
            k = self._batch_size(queue)
            claimed = deque(schema.run(self._engines.claim,
                                       lambda conn: self._claim(conn, queue, k)))
            fresh_until = monotonic() + self._lease.total_seconds() / 2
            if not claimed:
                if consumed:
                    self._empty_until[queue] = monotonic() + self._recheck
                raise Empty()
        row_id, payload, deliveries = claimed.popleft()
        if claimed:
            self._claimed[queue] = (claimed, fresh_until)
        message: dict[str, Any] = json.loads(payload)
        properties = message["properties"]
        self._leases[properties["delivery_tag"]] = (row_id, deliveries)
        if deliveries > 1:
            message["redelivered"] = True
            properties.setdefault("delivery_info", {})["redelivered"] = True
        return message

    def _unclaim(self, rows: Iterable[tuple[int, str, int]]) -> None:
        params = [{"rid": row_id, "n": n} for row_id, _, n in rows]
        # On failure they come back anyway when their lease runs out.
        with suppress(DBAPIError):
            if params:
                schema.run(self._engines.settle, lambda conn: conn.execute(schema.UNCLAIM, params))

    def _settle(self, delivery_tag: str) -> None:
        """Delete the row behind ``delivery_tag`` if we still hold its lease."""
        lease = self._leases.get(delivery_tag)
        if lease is not None:
            params = {"rid": lease[0], "n": lease[1]}
            schema.run(self._engines.settle, lambda conn: conn.execute(schema.SETTLE, params))
            self._leases.pop(delivery_tag, None)

    def ack_many(self, messages: Sequence[Any]) -> None:
        """Acknowledge kombu ``messages`` of this channel: their rows go in one statement."""
        params = []
        for message in messages:
            lease = self._leases.get(message.delivery_tag)
            if lease is not None:
                params.append({"rid": lease[0], "n": lease[1]})
        if params:
            schema.run(self._engines.settle, lambda conn: conn.execute(schema.SETTLE, params))
        for message in messages:
            self._leases.pop(message.delivery_tag, None)
            message.ack()  # the row is gone: only the channel's own bookkeeping is left

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Acknowledge: delete the message's row."""
        self._settle(delivery_tag)
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Reject: delete the row, or with ``requeue`` make it visible again."""
        if not requeue:
            self._settle(delivery_tag)
        super().basic_reject(delivery_tag, requeue=requeue)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """Fetch one message; with ``no_ack`` its row is deleted at once."""
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._settle(message.delivery_tag)
        return message

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        """Consume ``queue``; with ``no_ack`` each row is deleted when delivered."""
        deliver = callback
        if no_ack:

            def deliver(message: Any) -> Any:
                self._settle(message.delivery_tag)
                return callback(message)

        return super().basic_consume(queue, no_ack, deliver, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Cancel a consumer; rows claimed for it and not delivered go back."""
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._unclaim(self._claimed.pop(queue, ((), 0.0))[0])
        return result

    def close(self) -> None:
        """Close the channel: undelivered claims and unacked messages go back."""
        super().close()
        claimed, self._claimed = self._claimed, {}
        self._unclaim(row for rows, _ in claimed.values() for row in rows)

    def _restore(self, message: Any) -> None:
        """Make an unacked message's row visible again (kombu would insert a copy)."""
        lease = self._leases.pop(message.delivery_tag, None)
        if lease is None:
            super()._restore(message)  # not fetched here: kombu's copy, never a loss
            return
        params = {"rid": lease[0], "n": lease[1]}
        # With the database down the row comes back anyway when its lease runs
        # out; raising here would make kombu dump the message to a file.
        with suppress(DBAPIError):
            schema.run(self._engines.settle, lambda conn: conn.execute(schema.RELEASE, params))

    def _size(self, queue: str) -> int:
        params = {"q": queue, "now": schema.utcnow()}
        return int(schema.run(self._engines.put,
                              lambda conn: conn.execute(schema.SIZE, params).scalar_one()))

    def _purge(self, queue: str) -> int:
        # Like AMQP: ready messages go, delivered-but-unacked ones stay.
        params = {"q": queue, "now": schema.utcnow()}
        return int(schema.run(self._engines.put,
                              lambda conn: conn.execute(schema.PURGE, params).rowcount))

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        schema.run(self._engines.put, lambda conn: conn.execute(schema.DELETE_QUEUE, {"q": queue}))


class LeasedSqlTransport(kombu_sqla.Transport):  # type: ignore[misc]
    """kombu's SQLAlchemy transport with leased rows; see the module docstring."""

    Channel = SqlChannel
    polling_interval = 0.1
    connection_errors = (OperationalError, InterfaceError)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.lease_seconds = float(options.get("lease_seconds", DEFAULT_LEASE))
        if self.lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, not {self.lease_seconds}")
        self.claim_batch = max(1, int(options.get("claim_batch", 10)))
        self.holder: str | None = options.get("holder")
        self.leases: dict[str, tuple[int, int]] = {}
        self._engines: QueueEngines | None = None
        self._wakeup: Wakeup | None = None

    @property
    def engines(self) -> QueueEngines:
        """The process's engines for this connection's URL."""
        if self._engines is None:
            options = self.client.transport_options.get("engine_options")
            self._engines = get_engines(self.client.hostname, options)
        return self._engines

    def renew_leases(self) -> int:
        """Extend the lease of every row this connection holds (delivered or only claimed).

        Called by the consumer well inside the lease, so a worker at work on
        a long delivery keeps its messages, while a dead one's come back
        within one lease. Returns how many leases were renewed.
        """
        held = list(self.leases.values())
        for channel in self.channels:
            held.extend(channel.claimed_rows())
        if not held:
            return 0
        until = schema.utcnow() + timedelta(seconds=self.lease_seconds)
        params = [{"rid": row_id, "n": n, "until": until} for row_id, n in held]
        schema.run(self.engines.settle, lambda conn: conn.execute(schema.RENEW, params))
        fresh = monotonic() + self.lease_seconds / 2
        for channel in self.channels:
            channel.claims_renewed(fresh)
        return len(held)

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message; between polls of empty queues, wait for a NOTIFY (PostgreSQL)."""
        if not self.engines.notify:
            super().drain_events(connection, timeout)
            return
        if self._wakeup is None:
            self._wakeup = Wakeup(self.engines.put, schema.NOTIFY_CHANNEL)
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            wait = self.polling_interval
            if timeout is not None:
                left = timeout - (monotonic() - started)
                if left <= 0:
                    raise TimeoutError()  # what kombu's own loop raises
                wait = min(wait, left) if wait else left
            if self._wakeup.wait(wait):
                for channel in self.channels:
                    channel.forget_empty()

    def close_connection(self, connection: Any) -> None:
        """Close the channels and the listening connection."""
        try:
            super().close_connection(connection)
        finally:
            if self._wakeup is not None:
                self._wakeup.close()
                self._wakeup = None

    def establish_connection(self) -> Any:
        """Check that the database answers, then open the first channel."""
        schema.run(self.engines.put, lambda conn: conn.exec_driver_sql("SELECT 1").all())
        return super().establish_connection()


class SqlConnection(kombu.Connection):  # type: ignore[misc]
    """A ``kombu.Connection`` whose ``sqla+``/``sqlalchemy+`` URLs use :class:`SqlTransport`."""

    def _init_params(self, **params: Any) -> None:
        if params.get("transport") in (None, "sqla", "sqlalchemy"):
            params["transport"] = LeasedSqlTransport
        super()._init_params(**params)


def connection(url: str, *, polling_interval: float = 0.1, lease_seconds: float = DEFAULT_LEASE,
               holder: str | None = None, **kw: Any) -> kombu.Connection:
    """A kombu connection to the SQL queue at ``url`` (``sqla+`` prefix optional).

    ``holder``: the presence id of the worker whose leases this connection
    takes. ``kw`` goes to ``kombu.Connection``; its ``transport_options`` may
    hold ``engine_options`` for ``create_engine``.
    """
    scheme = url.partition("://")[0]
    if not scheme.startswith(("sqla+", "sqlalchemy+")):
        url = f"sqla+{url}"
    options = dict(kw.pop("transport_options", None) or {})
    options.update(polling_interval=polling_interval, lease_seconds=lease_seconds)
    if holder is not None:
        options["holder"] = holder
    return SqlConnection(url, transport_options=options, **kw)
