"""The worker: consumes the trigger and delivery routes until a limit or a signal.

One owner for each piece of state: delivery state belongs to the engine's
event loop, the consuming connection to the consuming thread; the others
hand them work and never touch them.

======================  ===================================  ==================================
thread                  runs                                 owns
======================  ===================================  ==================================
consuming: the thread   receive (``drain``), gather batches  the consuming connection and its
that calls              and hand them to the engine, settle  channels (kombu's are not thread-
``Worker.run`` (the     each message (ack, requeue, drop),   safe), the SQL queue's leases, the
main thread of          broker heartbeats and SQL lease      inbox, the in-flight count, the
``asyncevents worker``  renewal, queue priority (pause,      report; while idle, the
command)                resume, ready counts on its own      ``--max-idle-time`` and ``--burst``
                        connection), the limits              looks ask when a retry is due
``asyncevents-engine``  the engine's event loop: dispatch,   delivery state: batches in flight,
                        admission, attempts and records of   slots, lanes, the pipeline's state
                        each batch, asynchronous sinks, the  (receiver protection, the
                        pipeline's idle work (the health     successes held back from the
                        flush, which housekeeping asks for   health rows)
                        through ``Engine.idle``)
``asyncevents-io_N``    the blocking store and broker calls  nothing: each call works on what
                        the loop awaits (the fan-out         the loop hands it; a publishing
                        publish, the records, scheduling a   connection per thread (the
                        retry)                               transport's thread-local producer)
``asyncevents-sink_N``  synchronous sinks' ``deliver``       nothing (the sink's own client)
``asyncevents-          the tasks of :mod:`.housekeeping`:   its tasks' schedule and a
housekeeping``          the retry pump (every 0.2 s), the    publishing connection of its own
                        presence heartbeat and stop-workers  (the pump and the outbox sweep
                        (5 s), the health flush (1 s), the   never touch the consuming one);
                        outbox sweep, the hourly clean-up    a slow task delays the others,
                                                             never an ack
======================  ===================================  ==================================

The consuming thread receives messages, already decoded and checked by the
transport, gathers them into batches (as many as are ready, up to a bound,
waiting a few milliseconds at most for more) and hands each batch to the
:class:`~asyncevents.core.delivery.engine.Engine`. It settles every message
once the engine has recorded its outcome (a
:class:`~asyncevents.core.delivery.outcome.Settle`). A message whose handling
fails is returned to the queue, never dropped; only a message that no handler
could ever take (not JSON, fields missing, a delivery that does not exist)
is dropped, with an error in the log. Nothing slow runs between two turns of
its loop: housekeeping cannot delay an ack nor a broker heartbeat.

Named queues (``[routing]``, :mod:`~asyncevents.core.events.routing`): a worker
consumes the queues it is given (``--queues critical,default``), else every
queue the routing names and ``default``. Given several, it takes them in that
order of priority (:mod:`~asyncevents.core.worker.priority`).

When the broker goes away the worker reconnects by itself, waiting longer
after each failed try (0.5 s doubling up to 30 s), and logs both the loss and
the recovery. Messages it held on the lost connection are not acked: the
broker hands them out again, and the deliverer drops those already done.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import FrameType
from typing import Any

import structlog

from asyncevents.core.delivery.engine import Engine
from asyncevents.core.delivery.outcome import Settle
from asyncevents.core.events.routing import Router
from asyncevents.core.messages import DEFAULT_QUEUE, ROUTES, Route
from asyncevents.core.retry.base import RetryManagement
from asyncevents.core.retry.outage import OutageLog, misconfiguration
from asyncevents.core.transport import Consumption, Received, Transport, describe
from asyncevents.core.transport.base import Prioritised
from asyncevents.core.worker.housekeeping import Housekeeping, Periodic
from asyncevents.core.worker.limits import BurstWatch, WorkerLimits, WorkerReport, rss_mb
from asyncevents.core.worker.presence import Leases, Presence
from asyncevents.core.worker.priority import QueuePriority
from asyncevents.errors import ConfigError

__all__ = ["Periodic", "Worker", "WorkerLimits", "WorkerReport", "batch_size", "rss_mb"]

log = structlog.get_logger("asyncevents.worker")

_PUMP_EVERY = 0.2
# Acks wait for the loop to come round: a short turn keeps them (and the next
# message, which the prefetch window holds back until then) prompt.
_DRAIN_TIMEOUT = 0.05
_BUSY_DRAIN = 0.002
# A batch waits at most this long (seconds) for more messages to join it, and
# only when they come closer together than that: a message that arrives alone,
# this long after the one before it, goes at once (no company is coming).
_GATHER = 0.003
# Batches handled at once: one dispatching or recording while another delivers.
_BATCHES = 2
_RECONNECT_FIRST = 0.5
_RECONNECT_MAX = 30.0


def batch_size(concurrency: int) -> int:
    """The most messages one batch takes, for a worker running ``concurrency`` deliveries.

    Several per slot, for the batch's writes to be shared; not many more, so a
    worker does not hold (prefetch) work that others could do sooner.
    """
    return min(200, max(10, 4 * concurrency))


class Worker:
    """Runs the dispatcher and the deliverer over the broker's queues."""

    def __init__(self, transport: Transport, retries: RetryManagement, engine: Engine,
                 limits: WorkerLimits | None = None,
                 on_exit: Callable[[], None] | None = None,
                 periodic: Sequence[Periodic] = (),
                 presence: Presence | None = None,
                 routes: list[Route] | None = None,
                 queues: Sequence[str] | None = None) -> None:
        self.transport = transport
        self.engine = engine
        self.routes = list(routes or ROUTES)
        self.presence = presence
        self.queues: list[str] = []
        #: The order between several named queues (None: one queue, or no order).
        self.priority: QueuePriority | None = None
        self.use_queues(queues)
        self.on_exit = on_exit
        self.retries = retries
        # Held by the retry pump while it moves due retries to their queue
        # (in neither count then): the idle and burst looks wait for it.
        self._pump_lock = threading.Lock()
        #: The periodic tasks, on a thread of their own (see the table above):
        #: those given, the first time after one period; the retry pump and
        #: the presence heartbeat at once.
        self.housekeeping = Housekeeping(periodic)
        self.housekeeping.add("retry pump", _PUMP_EVERY, self._pump, first=0.0)
        if presence is not None:
            presence.outage = engine.store_outage  # one store outage, one pair of lines
            self.housekeeping.add("presence", presence.every, self._beat, first=0.0)
        #: On the SQL queue: the messages of workers whose presence went silent.
        self.leases = Leases.of(transport, presence)
        if self.leases is not None and presence is not None:
            self.housekeeping.add("lease reclaim", presence.every, self._reclaim)
        self._broker_lost = OutageLog("broker", counted="reconnects",
                                      lost="broker connection lost, reconnecting",
                                      back="broker connection restored")
        self.limits = limits or WorkerLimits()
        self.batch = batch_size(self.limits.concurrency)
        self.report = WorkerReport()
        self._stop = threading.Event()
        self._stop_lock = threading.RLock()  # stop() comes from housekeeping and signals too
        self._drain = False
        # Messages received and not yet handed to the engine, since when.
        self._inbox: list[Received] = []
        self._inbox_since = 0.0
        self._last_arrival = 0.0
        self._alone = False  # the inbox's first message came long after the one before
        # (batch, its future, the connection it came on); settled by the main
        # thread, which alone touches the consuming connection.
        self._done: queue.Queue[tuple[list[Received], Future[list[Settle]], int]] = \
            queue.Queue()
        self._batches = 0
        self._generation = 0
        self._lost_at: float | None = None
        self._in_flight = 0
        self._received = 0
        self._last_activity = time.monotonic()
        self._failures_in_row = 0
        self._session: Consumption | None = None
        self._burst = (BurstWatch(self.retries, self._waiting_now, self._pump_lock)
                       if self.limits.burst else None)

    def use_queues(self, queues: Sequence[str] | None) -> None:
        """Consume these named queues, earlier ones first; None: every routed queue, unordered."""
        if queues:
            self.queues = list(queues)
            self.priority = QueuePriority(queues) if len(queues) > 1 else None
        else:
            self.queues = Router(self.transport.settings.routing).queues
            self.priority = None
        if self.presence is not None:
            self.presence.queues = None if self.queues == [DEFAULT_QUEUE] else list(self.queues)

    def stop(self, reason: str = "stopped", *, drain: bool = False) -> None:
        """Ask the worker to finish the deliveries in flight and return.

        Messages not started yet go back to their queue for another worker;
        with ``drain`` (the message limit) the ones received are handled first.
        """
        with self._stop_lock:
            if not self._stop.is_set():
                self.report.reason = reason
                self._drain = drain
                self._stop.set()

    def _beat(self) -> None:
        assert self.presence is not None
        if self.presence.beat(self._in_flight, self.report.handled):
            self.stop("asked to stop (stop-workers)")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop(f"signal {signal.Signals(signum).name}")

    def run(self) -> WorkerReport:
        """Consume until a limit, a signal or ``stop()``; return the report."""
        if self.limits.only_if_waiting and not self._anything_waiting():
            return self.report
        previous = self._install_signals()
        started = self._last_activity = time.monotonic()
        self.housekeeping.start()
        log.info("worker started", transport=self.transport.safe_url(),
                 concurrency=self.limits.concurrency, queues=self.queues)
        errors = self.transport.connection_errors
        retry_in = _RECONNECT_FIRST
        try:
            while not self._stop.is_set():
                try:
                    self._consume(started)
                except Exception as exc:
                    wrong = misconfiguration(exc)
                    if wrong is not None:
                        # Nothing to wait for: a supervisor restarts us once it is fixed.
                        raise ConfigError(f"cannot consume from {self.transport.safe_url()}: "
                                          f"{wrong}") from None
                    if not isinstance(exc, errors):
                        raise
                    if self._stop.is_set():
                        break
                    # Still lost since the last try (a connection that opens
                    # but fails at once counts as lost): wait longer.
                    if self._lost_at is None:
                        self._lost_at, retry_in = time.monotonic(), _RECONNECT_FIRST
                    else:
                        retry_in = min(retry_in * 2, _RECONNECT_MAX)
                    self.report.reconnects += 1
                    self._forget_inbox()  # the broker hands those out again
                    # One line when the outage starts, one when it ends (_restored).
                    self._broker_lost.failed(exc, retry_in=retry_in)
                    self._stop.wait(retry_in)
        finally:
            self.housekeeping.stop()  # before the engine closes: the health flush runs on it
            self._wait_for_batches()
            self.engine.close()
            self._restore_signals(previous)
            if self.presence is not None:
                self.presence.leave()
            if self.on_exit is not None:
                self.on_exit()
        log.info("worker stopped", reason=self.report.reason, handled=self.report.handled,
                 failed=self.report.failed, dropped=self.report.dropped)
        return self.report

    def _consume(self, started: float) -> None:
        self._generation += 1
        generation = self._generation
        # One try to connect here: the back-off between tries is run()'s.
        # Room for the batches in the engine and the next one gathering.
        prefetch = (_BATCHES + 1) * self.batch
        # With priorities, the first queue alone to begin with: a backlog in a
        # later one is not sent to us before the earlier ones are seen empty.
        paused = self.priority.start() if self.priority is not None else []
        if self.queues == [DEFAULT_QUEUE]:  # what any transport takes, a plugin's too
            session = self.transport.consume(self.routes, self._on_message, self._on_dropped,
                                             prefetch=prefetch)
        else:
            session = self.transport.consume(self.routes, self._on_message, self._on_dropped,
                                             prefetch=prefetch, queues=self.queues,
                                             paused=paused)
        self._session = session
        if self.priority is not None and not isinstance(session, Prioritised):
            log.warning("this transport cannot pause a queue: the queues are consumed "
                        "together, in no order of priority", transport=self.transport.scheme)
            self.priority = None
        try:
            while not self._stop.is_set():
                # While batches run, come back at once to ack what they
                # finish: the broker sends nothing more than the window.
                before = self._received
                session.drain(_BUSY_DRAIN if self._in_flight else _DRAIN_TIMEOUT)
                session.heartbeat()
                self._restored()  # only once a full turn worked
                if self.priority is not None:
                    self.priority.step(session)
                self._flush(generation, quiet=self._received == before)
                self._ack_done()
                self._check_limits(started)
            session.cancel()
            if self._drain:  # the message limit: handle what was received
                self._flush(generation, quiet=True, force=True)
            else:  # finish what is in flight; the rest goes back to the queue
                self.engine.stop_starting()
                self._requeue_inbox()
            self._finish_in_flight(session)
        finally:
            session.close()

    def _requeue_inbox(self) -> None:
        """Give the gathered messages back to their queue (a graceful stop)."""
        inbox, self._inbox = self._inbox, []
        self._in_flight -= len(inbox)
        for received in inbox:
            received.requeue()

    def _forget_inbox(self) -> None:
        """Drop the gathered messages of a lost connection (the broker has them again)."""
        self._in_flight -= len(self._inbox)
        self._let_go(self._inbox)
        self._inbox = []

    def _restored(self) -> None:
        if self._lost_at is not None:
            self._broker_lost.recovered(transport=self.transport.safe_url())
            self._lost_at = None

    def _on_message(self, received: Received) -> None:
        if self.limits.limit is not None and self._received >= self.limits.limit:
            received.requeue()  # past the limit: for another worker
            return
        now = time.monotonic()
        if not self._inbox:
            self._inbox_since = now
            self._alone = now - self._last_arrival >= _GATHER
        self._last_arrival = now
        if self.priority is not None:
            self.priority.arrived(received)
        self._inbox.append(received)
        self._in_flight += 1
        self._received += 1
        self._last_activity = now
        if self.limits.limit is not None and self._received >= self.limits.limit:
            self.stop("message limit reached", drain=True)

    def _flush(self, generation: int, *, quiet: bool, force: bool = False) -> None:
        """Hand the gathered messages to the engine when the batch is full or has waited."""
        while self._inbox:
            full = len(self._inbox) >= self.batch
            waited = (quiet or (self._alone and len(self._inbox) == 1)
                      or time.monotonic() - self._inbox_since >= _GATHER)
            # Room by messages, not batches: a batch held by a slow delivery
            # must not keep the next events from starting.
            room = self._in_flight - len(self._inbox) < _BATCHES * self.batch
            if not (force or ((full or waited) and room)):
                return
            if self.priority is not None:  # earlier queues' messages first (a stable sort)
                self._inbox.sort(key=self.priority.rank)
            batch, self._inbox = self._inbox[:self.batch], self._inbox[self.batch:]
            self._inbox_since = time.monotonic()
            self._batches += 1
            future = self.engine.submit([(r.message, r.dead) for r in batch])
            future.add_done_callback(self._on_done(batch, generation))

    def _let_go(self, received: list[Received]) -> None:
        if self.priority is not None:
            self.priority.let_go(received)

    def _on_done(self, batch: list[Received],
                 generation: int) -> Callable[[Future[list[Settle]]], None]:
        def done(future: Future[list[Settle]]) -> None:
            self._done.put((batch, future, generation))
        return done

    def _on_dropped(self, _problem: str) -> None:
        # The transport dropped a message no handler could take, and logged why.
        self.report.dropped += 1

    def _ack_done(self, block: bool = False) -> None:
        while True:
            try:
                batch, future, generation = self._done.get(
                    block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return
            block = False
            self._batches -= 1
            self._in_flight -= len(batch)
            self._let_go(batch)
            self._last_activity = time.monotonic()
            outcomes = _outcomes(future, len(batch))
            for outcome in outcomes:
                if outcome is Settle.ACK:
                    self.report.handled += 1
                    self._failures_in_row = 0
                elif outcome is Settle.DROP:
                    self.report.dropped += 1
                else:
                    self.report.failed += 1
                    self._failures_in_row += 1
            limit = self.limits.failure_limit
            if limit is not None and self._failures_in_row >= limit:
                self.stop(f"failure limit reached: {self._failures_in_row} handlings failed "
                          "in a row and were requeued (the log says why)")
            try:
                _settle(self._session, batch, outcomes)
            except Exception as exc:
                if generation == self._generation:
                    raise  # this connection is failing: run() reconnects
                # It came on a connection that is gone, so the broker has
                # already put it back in line (a SQL lease runs out).
                log.info("messages from a lost connection left to the broker",
                         error=describe(exc))

    def _finish_in_flight(self, session: Consumption) -> None:
        while self._batches > 0:
            self._ack_done(block=True)
            session.heartbeat()  # a long delivery keeps its lease while we wait

    def _wait_for_batches(self) -> None:
        """Let running batches end before the engine closes (their messages stay unacked)."""
        while self._batches > 0:
            try:
                self._done.get(timeout=60)
            except queue.Empty:
                return
            self._batches -= 1

    def _pump(self) -> None:
        """Send the retries now due to their queue (a housekeeping task)."""
        with self._pump_lock:
            if self.retries.pump():
                self._last_activity = time.monotonic()

    def _reclaim(self) -> None:
        """The SQL queue: messages of workers gone silent are due again (a housekeeping task)."""
        assert self.leases is not None
        began = time.monotonic()
        try:
            self.leases.reclaim()
        except Exception as exc:  # the store's outage, told once
            self.engine.store_outage.failed(exc, count=0)
        else:
            self.engine.store_outage.recovered(began=began)

    def _orphans(self) -> int:
        """Messages of our queues held by a worker that went silent (SQL queue), else 0."""
        if self.leases is None:
            return 0
        return self.leases.orphaned(self.queues, self._last_activity)

    def _waiting_now(self) -> int | None:
        """Ready messages on our queues, through the consuming connection when it can count,
        and those a silent worker holds (back when its lease ends)."""
        if isinstance(self._session, Prioritised):
            return self._session.ready(self.queues) + self._orphans()
        waiting = self.transport.waiting(self.queues)
        return None if waiting is None else waiting + self._orphans()

    def _anything_waiting(self) -> bool:
        """For ``only_if_waiting``: is a message ready on our queues, or a retry due now?

        A delayed message (a retry, a delayed publish) waits only once it is
        due: until then a worker started by cron would have nothing to do.
        A transport that cannot tell counts as something waiting.
        """
        try:
            ready = self.transport.waiting(self.queues)
            due = self.retries.seconds_until_due()
        except Exception as exc:
            # Unreachable now: let the usual loop ride the outage out.
            log.warning("cannot tell whether messages wait", error=describe(exc))
            return True
        if (ready is None or ready > 0) or (due is not None and due <= 0):
            return True
        self.report.skipped = True
        self.report.reason = f"nothing waiting on queue(s) {', '.join(self.queues)}"
        log.info("worker not started", reason=self.report.reason)
        return False

    def _check_limits(self, started: float) -> None:
        limits, now = self.limits, time.monotonic()
        if limits.time_limit is not None and now - started >= limits.time_limit:
            self.stop("time limit reached")
        elif limits.memory_limit_mb is not None and rss_mb() >= limits.memory_limit_mb:
            self.stop("memory limit reached")
        elif self._in_flight or self._batches:
            return
        elif (limits.max_idle_time is not None
              and now - self._last_activity >= limits.max_idle_time):
            if not self._pump_lock.acquire(timeout=_DRAIN_TIMEOUT):
                return  # moving due retries to their queue right now
            try:
                due = self.retries.seconds_until_due()
                # A silent worker's messages are not idle time: they come back.
                orphans = self._orphans()
            finally:
                self._pump_lock.release()
            if (due is None or due > limits.max_idle_time) and not orphans:
                self.stop("idle")
        elif self._burst is not None and self._burst.drained(self._last_activity, now):
            self.stop("drained")

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _outcomes(future: Future[list[Settle]], size: int) -> list[Settle]:
    """Each message's outcome; all requeued when the batch itself failed."""
    if future.cancelled() or future.exception() is not None:
        if not future.cancelled():
            log.error("batch failed, messages returned to the queue",
                      error=describe(future.exception() or Exception()))
        return [Settle.REQUEUE] * size
    # Settle(...) also reads an outcome in the old bool | None encoding.
    return [Settle(outcome) for outcome in future.result()]


def _settle(session: Consumption | None, batch: list[Received],
            outcomes: list[Settle]) -> None:
    done = []
    for received, outcome in zip(batch, outcomes, strict=True):
        if outcome is Settle.REQUEUE:
            received.requeue()
        elif outcome is Settle.DROP:
            received.drop()
        else:
            done.append(received)
    if session is not None:
        session.ack_many(done)  # one statement for the batch on a SQL queue
    else:
        for received in done:
            received.ack()
