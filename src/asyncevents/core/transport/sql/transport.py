"""The SQL queue (``sqla+<database url>``): crash-safe leases and delays in one table.

The leasing kombu transport is in :mod:`.channel`, its table and engines in
:mod:`.schema`. A delay is a row whose ``visible_at`` lies in the future:
no schedule table and no pump.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

import sqlalchemy
import structlog
from kombu import Connection
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.serialization import dumps
from sqlalchemy import case, func, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from asyncevents.core.clock import naive_utcnow
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.messages import DEFAULT_QUEUE, Message, Route
from asyncevents.core.transport.base import (
    OnDropped,
    OnReceived,
    QueueStats,
    Received,
    Transport,
    first_line,
)
from asyncevents.core.transport.kombubase import (
    KombuConsumption,
    KombuReceived,
    KombuTransport,
    QueueMap,
)
from asyncevents.core.transport.sql import schema as sqlschema
from asyncevents.core.transport.sql.channel import DELAY_HEADER, connection
from asyncevents.errors import TransportError

__all__ = ["SqlConsumption", "SqlTransport", "register_transports"]

log = structlog.get_logger("asyncevents.transport")


class SqlConsumption(KombuConsumption):
    """Consumers on the SQL queue that keep renewing the leases of what they hold."""

    def __init__(self, conn: Connection, queues: QueueMap, on_received: OnReceived,
                 on_dropped: OnDropped, prefetch: int, lease_seconds: float,
                 paused: Collection[str] = ()) -> None:
        super().__init__(conn, queues, on_received, on_dropped, prefetch, paused=paused)
        self._every = lease_seconds / 3
        self._next = monotonic() + self._every

    def ack_many(self, received: Sequence[Received]) -> None:
        """Delete the rows of every message at once: one statement for a batch."""
        raws = [r.raw for r in received if isinstance(r, KombuReceived)]
        if raws:
            raws[0].channel.ack_many(raws)
        for one in received:
            if not isinstance(one, KombuReceived):
                one.ack()

    def ready(self, queues: Sequence[str]) -> int:
        """Visible rows of ``queues``, and those claimed for us but not handed over yet."""
        return super().ready(queues) + int(self.channel.claimed_in(self.queue_names(queues)))

    def heartbeat(self) -> None:
        """Renew the held leases once a third of the lease has passed since the last time."""
        now = monotonic()
        if now < self._next:
            return
        try:
            self.conn.transport.renew_leases()
        except DBAPIError as exc:
            # The database is away: the rows may come back to another worker
            # (a duplicate at worst); try again soon.
            log.warning("cannot renew the leases of held messages", error=first_line(exc))
            self._next = now + min(1.0, self._every)
            return
        self._next = now + self._every


class SqlTransport(KombuTransport):
    """A SQL database as the queue, with leases and native delays."""

    native_delays = True
    #: The presence id of the worker consuming through this transport: the
    #: rows it leases carry it (None: a consumer without a presence).
    holder: str | None = None

    def connect(self) -> Connection:
        """A kombu connection over the leasing SQL transport."""
        return connection(self.url, polling_interval=self.settings.polling_interval,
                          lease_seconds=self.settings.lease_seconds, holder=self.holder,
                          **self.connect_options())

    def reclaim_silent(self, before: datetime, *, ids: Sequence[str] | None = None) -> int:
        """End the leases of workers silent since ``before``: their rows are due now; how many.

        One UPDATE per queue of the installation, joined against the store's
        workers table (in this database); ``ids``: the silent workers' ids
        instead, when that table is in another database.
        """
        silent: sqlschema.Holders = sqlschema.silent_since(before) if ids is None else ids
        names = [str(queue.name) for queue in self.topology.queues]
        now = naive_utcnow()

        def work(conn: sqlalchemy.Connection) -> int:
            return sum(int(conn.execute(sqlschema.reclaim(name, now, silent)).rowcount or 0)
                       for name in names)

        return sqlschema.run(self._engines().settle, work)

    def orphaned(self, queues: Sequence[str], since: datetime, *,
                 alive_ids: Sequence[str] | None = None) -> int:
        """Rows of ``queues`` (table names) leased by another worker that has not beaten since
        ``since`` (the workers table in this database; else ``alive_ids``: those that did)."""
        alive: sqlschema.Holders = (sqlschema.beating_since(since) if alive_ids is None
                                    else alive_ids)
        query = sqlschema.orphaned(queues, naive_utcnow(), self.holder, alive)
        return int(sqlschema.run(self._engines().put,
                                 lambda conn: conn.execute(query).scalar_one()))

    def consumption(self, conn: Connection, routes: Sequence[Route], on_received: OnReceived,
                    on_dropped: OnDropped, prefetch: int,
                    names: Sequence[str] = (DEFAULT_QUEUE,),
                    paused: Collection[str] = ()) -> SqlConsumption:
        """The routes' consumers, renewing leases from :meth:`SqlConsumption.heartbeat`."""
        return SqlConsumption(conn, self.queues(routes, names), on_received, on_dropped,
                              prefetch, self.settings.lease_seconds, paused)

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """The database driver's connection errors, kombu's wrapper of them, and the
        socket-level ones (a reconnect during an outage fails with kombu's)."""
        return (OperationalError, InterfaceError, KombuOperationalError, ConnectionError,
                OSError)

    def enqueue(self, message: Message, *, delay: float = 0.0) -> None:
        """Insert the message's row, visible ``delay`` seconds from now."""
        headers: dict[str, Any] | None = {DELAY_HEADER: delay} if delay > 0 else None
        self.publish_raw(message.body(), route=message.route, headers=headers,
                         queue_name=message.queue)

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Insert every message's row in one transaction (one commit to wait for)."""
        if len(messages) < 2:
            super().enqueue_many(messages)
            return
        producer = self._producer()
        try:
            channel = self._local.conn.default_channel
            with channel.batched_puts():
                for message in messages:
                    queue = self.topology.queue(message.route, message.queue)
                    # Nothing reaches the database before the batch ends: no retry here.
                    producer.publish(message.body(), exchange=self.topology.exchange,
                                     routing_key=queue.routing_key, delivery_mode=2,
                                     declare=[queue], retry=False)
        except Exception as exc:
            self._reset()
            raise TransportError(
                f"cannot publish to the broker at {self.safe_url()}: {first_line(exc)}"
            ) from None

    @property
    def database(self) -> URL:
        """The URL of the database that holds this queue."""
        return sqlschema.engine_url(self.url.partition("+")[2])

    def enqueue_through(self, conn: sqlalchemy.Connection, messages: Sequence[Message], *,
                        delay: float = 0.0) -> None:
        """Insert the messages' rows through ``conn``, in its open transaction.

        For the transactional outbox when the application's database is this
        queue's (:attr:`database`): the rows are ready when, and only when,
        the application's transaction commits (on PostgreSQL the NOTIFY is
        sent at that commit too). Each row holds what kombu would have stored,
        so a consumer cannot tell it apart. The queue table is created on
        first use, on SQLite inside ``conn``'s transaction (another
        connection would wait for this writer).
        """
        if not messages:
            return
        if conn.dialect.name == "sqlite":
            sqlschema.metadata.create_all(conn, checkfirst=True)
        else:
            self._engines()  # creates the table on a connection of its own
        now = naive_utcnow()
        visible = now + timedelta(seconds=delay) if delay > 0 else now
        rows = [{"queue": self.topology.queue(m.route, m.queue).name,
                 "payload": json.dumps(self._envelope(m)), "created_at": visible,
                 "visible_at": visible, "deliveries": 0} for m in messages]
        # One statement per row: the ids, hence the consumers' order, follow the list.
        for row in rows:
            conn.execute(sqlschema.PUT, row)
        if conn.dialect.name == "postgresql":
            for queue in {row["queue"] for row in rows}:
                conn.execute(sqlschema.NOTIFY, {"q": queue})

    def _envelope(self, message: Message) -> dict[str, Any]:
        """The kombu message that ``Producer.publish`` would store for ``message``."""
        content_type, encoding, body = dumps(message.body(), serializer="json")
        data = body.encode(encoding) if isinstance(body, str) else body
        return {"body": base64.b64encode(data).decode("ascii"), "content-encoding": encoding,
                "content-type": content_type, "headers": {},
                "properties": {"delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                               "delivery_info": {"exchange": self.topology.exchange.name,
                                                 "routing_key": self.topology.routing_key(
                                                     message.route, message.queue)},
                               "delivery_tag": str(uuid.uuid4())}}

    def _engines(self) -> sqlschema.QueueEngines:
        return sqlschema.get_engines(self.url.partition("+")[2])

    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest delayed row of this installation is due."""
        names = [str(queue.name) for queue in self.topology.queues]
        params = {"qs": names, "now": naive_utcnow()}
        earliest = sqlschema.run(self._engines().put,
                                 lambda conn: conn.execute(sqlschema.NEXT_DUE, params).scalar())
        if earliest is None:
            return None
        return max(0.0, float((earliest - naive_utcnow()).total_seconds()))

    def queue_stats(self) -> list[QueueStats]:
        """Per queue: rows visible now (ready), leased (in flight), visible later (delayed).

        A leased row whose lease ran out counts as ready: any worker may take it.
        Consumers are not known to the table (``asyncevents workers`` lists them).
        """
        names = [str(queue.name) for queue in self.topology.queues]
        c, now = sqlschema.messages.c, naive_utcnow()
        later = c.visible_at > now
        query = (select(c.queue, func.sum(case((c.visible_at <= now, 1), else_=0)),
                        func.sum(case((later & (c.deliveries > 0), 1), else_=0)),
                        func.sum(case((later & (c.deliveries == 0), 1), else_=0)))
                 .where(c.queue.in_(names)).group_by(c.queue))
        rows = sqlschema.run(self._engines().put, lambda conn: conn.execute(query).all())
        found = {str(q): (int(r or 0), int(f or 0), int(d or 0)) for q, r, f, d in rows}
        return [QueueStats(name, *found.get(name, (0, 0, 0))) for name in names]


@hookimpl(trylast=True)
def register_transports(register: Callable[[str, type[Transport]], None]) -> None:
    """``sqla+...`` and ``sqlalchemy+...`` URLs."""
    register("sqla", SqlTransport)
    register("sqlalchemy", SqlTransport)
