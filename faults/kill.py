"""kill -9 of a worker mid-stream, several times in one run, at the default settings.

Publish a batch, start a worker, SIGKILL it once a share of the batch has
arrived, start the next one at once, and so on; a last worker drains the
rest. What a killed worker held is redelivered (RabbitMQ: the channel closed
unacked; SQL queue: the lease, 10 s by default and renewed every third of it
by a live holder, ran out), so nothing is lost and the only duplicates are
deliveries the receiver got before the worker could record them: same
``webhook-id``.

The row also measures how soon a killed worker's messages came back
(:class:`HeldWatch`). On the SQL queue: every row the killed worker held
(claimed, lease not run out) at the kill, until another worker claimed it
again (its lease token rose) or it was gone; the row fails beyond
:data:`REDELIVERY_LIMIT`. On RabbitMQ: until the broker dropped the dead
consumer, which is when it puts its unacked messages back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from asyncevents.core.clock import naive_utcnow
from asyncevents.core.messages import ROUTES
from asyncevents.core.transport.kombubase import KombuTransport
from asyncevents.core.transport.sql.schema import engine_url, messages
from faults.figures import Row, tally
from faults.receiver import Hit, Receiver
from faults.stack import Stack

__all__ = ["REDELIVERY_LIMIT", "HeldWatch", "KillFigures", "Redelivery", "kill_scenario", "run"]

#: The longest a killed worker's messages may take to come back (seconds).
REDELIVERY_LIMIT = 15.0


@dataclass
class Redelivery:
    """What one killed worker held, and when it came back."""

    kill: int
    killed_at: float
    """``time.monotonic()`` right after the SIGKILL."""
    held: int = 0
    """Messages it held at the kill (SQL: leased rows; RabbitMQ: unknown, 0)."""
    back_after: float | None = None
    """Seconds from the kill until the last of them was handed out again."""
    first_request_after: float | None = None
    """Seconds from the kill until the receiver got the last request carrying a held message
    (only messages that led to a request after the kill count)."""

    def describe(self) -> str:
        """One phrase for the row's notes."""
        if self.back_after is None:
            return f"kill {self.kill}: {self.held} held, NOT all back"
        text = f"kill {self.kill}: {self.held} held, back after {self.back_after:.1f} s"
        if self.first_request_after is not None:
            text += f" (at the receiver {self.first_request_after:.1f} s)"
        return text


@dataclass
class _HeldRow:
    row_id: int
    token: int
    kill: int
    event_id: str = ""
    delivery_id: str = ""
    back_at: float | None = None


@dataclass
class HeldWatch:
    """Watches the SQL queue table for the rows killed workers held (see the module docstring).

    :meth:`killed` snapshots the leased rows right after a kill (before the
    next worker starts); a thread polls those rows every ``every`` seconds.
    """

    url: str
    queues: list[str]
    every: float = 0.1
    rows: dict[int, _HeldRow] = field(default_factory=dict)
    kills: list[Redelivery] = field(default_factory=list)
    _engine: sa.Engine | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_stack(cls, stack: Stack) -> HeldWatch | None:
        """A watch on the stack's SQL queue, or None on RabbitMQ."""
        url = stack.settings.transport_url
        if not url.startswith(("sqla+", "sqlalchemy+")):
            return None
        transport = stack.app.transport
        assert isinstance(transport, KombuTransport)
        names = [transport.topology.queue(route).name for route in ROUTES]
        return cls(url.partition("+")[2], names)

    def start(self) -> HeldWatch:
        """Open the database and start polling."""
        self._engine = sa.create_engine(engine_url(self.url), poolclass=sa.pool.NullPool)
        self._thread = threading.Thread(target=self._run, daemon=True, name="held-watch")
        self._thread.start()
        return self

    def killed(self, kill: int, killed_at: float) -> Redelivery:
        """Snapshot what the worker killed at ``killed_at`` held; its record."""
        record = Redelivery(kill, killed_at)
        table = messages.c
        query = (sa.select(table.id, table.deliveries, table.payload)
                 .where(table.queue.in_(self.queues), table.deliveries > 0,
                        table.visible_at > naive_utcnow()))
        assert self._engine is not None
        with self._engine.connect() as conn:
            leased = conn.execute(query).all()
        with self._lock:
            for row_id, token, payload in leased:
                known = self.rows.get(row_id)
                if known is not None and known.token == token and known.back_at is None:
                    continue  # an earlier killed worker's, still waiting
                event_id, delivery_id = _ids(payload)
                self.rows[row_id] = _HeldRow(row_id, token, kill, event_id, delivery_id)
                record.held += 1
            self.kills.append(record)
        return record

    def _run(self) -> None:
        table = messages.c
        while not self._stop.wait(self.every):
            with self._lock:
                waiting = {r.row_id: r for r in self.rows.values() if r.back_at is None}
            if not waiting:
                continue
            try:
                assert self._engine is not None
                with self._engine.connect() as conn:
                    now = conn.execute(sa.select(table.id, table.deliveries)
                                       .where(table.id.in_(list(waiting)))).all()
            except sa.exc.DBAPIError:
                continue
            seen = time.monotonic()
            tokens = dict(now)
            with self._lock:
                for row_id, row in waiting.items():
                    token = tokens.get(row_id)
                    if token is None or token > row.token:  # acked by another, or re-claimed
                        row.back_at = seen

    def stop(self, hits: list[Hit]) -> list[Redelivery]:
        """Stop polling; fill in each kill's figures from the rows and the receiver's hits."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._engine is not None:
            self._engine.dispose()
        for record in self.kills:
            rows = [r for r in self.rows.values() if r.kill == record.kill]
            if any(r.back_at is None for r in rows):
                record.back_after = None
            else:
                record.back_after = max((r.back_at or 0.0) - record.killed_at for r in rows) \
                    if rows else 0.0
            at_receiver = [_first_request(hits, r, record.killed_at) for r in rows]
            arrived = [t - record.killed_at for t in at_receiver if t is not None]
            record.first_request_after = max(arrived) if arrived else None
        return self.kills


def _ids(payload: str) -> tuple[str, str]:
    """(event id, delivery id) of a queue row's kombu payload ("" where absent)."""
    try:
        message: dict[str, Any] = json.loads(payload)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        data = json.loads(body)
        return str(data.get("event_id") or ""), str(data.get("delivery_id") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", ""


def _first_request(hits: list[Hit], row: _HeldRow, after: float) -> float | None:
    for hit in hits:
        if hit.at <= after:
            continue
        if (row.delivery_id and hit.webhook_id == row.delivery_id) or (
                row.event_id and hit.event_id == row.event_id):
            return hit.at
    return None


@dataclass
class KillFigures:
    """A kill run's figures."""

    published: int
    delivered: int
    duplicated: int
    lost: int
    kills: int
    unidentifiable: int
    redeliveries: list[Redelivery] = field(default_factory=list)


def kill_scenario(stack: Stack, receiver: Receiver, *, events: int, kills: int,
                  timeout: float = 180.0) -> KillFigures:
    """Publish ``events``, SIGKILL the worker ``kills`` times mid-stream, then drain."""
    url = receiver.url("ok", "kill")
    stack.subscribe(url)
    event_ids = [stack.app.publish("fault.kill", {"n": n}) for n in range(events)]
    watch = HeldWatch.for_stack(stack)
    if watch is not None:
        watch.start()
    amqp: list[Redelivery] = []
    deadline = time.monotonic() + timeout
    done = 0
    try:
        for k in range(kills):
            worker = stack.worker(name="killed")
            target = (k + 1) * events // (kills + 2)
            while receiver.delivered() < target and time.monotonic() < deadline:
                if not worker.alive():
                    break
                time.sleep(0.02)
            worker.kill()
            killed_at = time.monotonic()
            done += 1
            if watch is not None:
                watch.killed(k + 1, killed_at)
            else:
                amqp.append(_broker_lets_go(stack, k + 1, killed_at))
        # The drain outlives the leases of the killed workers' rows (SQL queue).
        idle = stack.settings.lease_seconds + 3 if watch is not None else 3.0
        stack.drain(idle=idle, time_limit=max(10.0, deadline - time.monotonic()))
    finally:
        hits = receiver.snapshot()
        redeliveries = watch.stop(hits) if watch is not None else amqp
    counted = tally(hits, event_ids, [_path(url)])
    return KillFigures(counted.published, counted.delivered, counted.duplicated, counted.lost,
                       done, counted.unidentifiable, redeliveries)


def _broker_lets_go(stack: Stack, kill: int, killed_at: float, timeout: float = 30.0
                    ) -> Redelivery:
    """RabbitMQ: wait until no consumer is left on the stack's queues (their messages are back)."""
    transport = stack.app.transport
    assert isinstance(transport, KombuTransport)
    record = Redelivery(kill, killed_at)
    conn = transport.connect()
    try:
        channel = conn.channel()
        while time.monotonic() < killed_at + timeout:
            consumers = 0
            for route in ROUTES:
                queue = transport.topology.queue(route)
                consumers += queue(channel).queue_declare(passive=True).consumer_count
            if consumers == 0:
                record.back_after = time.monotonic() - killed_at
                break
            time.sleep(0.02)
    finally:
        conn.release()
    return record


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """The fault-table row for ``transport``, at the default settings."""
    events, kills = (60, 2) if short else (300, 4)
    row = Row(f"kill -9 worker x{kills}", transport)
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            figures = kill_scenario(stack, receiver, events=events, kills=kills)
            lease = stack.settings.lease_seconds
    finally:
        receiver.close()
    row.published, row.delivered = figures.published, figures.delivered
    row.duplicated, row.lost = figures.duplicated, figures.lost
    row.check(figures.kills == kills, f"only {figures.kills} of {kills} kills happened")
    row.check(figures.unidentifiable == 0,
              f"{figures.unidentifiable} duplicates without one webhook-id")
    times = [r.back_after for r in figures.redeliveries]
    worst = max((t for t in times if t is not None), default=0.0)
    if transport == "amqp":
        row.notes.append(
            "default settings, 4 threads per worker; redelivery = kill until RabbitMQ has no "
            "consumer left on the queues (it requeues the dead one's unacked messages then): "
            + ", ".join(f"{t:.2f} s" if t is not None else "never" for t in times))
    else:
        row.notes.append(
            f"default settings (lease {lease:g} s, renewed every {lease / 3:.1f} s), 4 threads "
            "per worker; redelivery = kill until every row the killed worker held is claimed "
            "by another worker (queue table polled every 0.1 s): "
            + "; ".join(r.describe() for r in figures.redeliveries)
            + f"; longest {worst:.1f} s (limit {REDELIVERY_LIMIT:g} s)")
        row.check(any(r.held > 0 for r in figures.redeliveries),
                  "no killed worker held anything: the run proves nothing about leases")
        late = [r.first_request_after for r in figures.redeliveries
                if r.first_request_after is not None and r.first_request_after > REDELIVERY_LIMIT]
        row.check(not late, f"a held message reached the receiver {max(late, default=0):.1f} s "
                            "after the kill")
    row.check(all(t is not None for t in times), "a killed worker's messages never came back")
    row.check(worst <= REDELIVERY_LIMIT,
              f"a killed worker's messages came back after {worst:.1f} s "
              f"(limit {REDELIVERY_LIMIT:g} s)")
    return row
