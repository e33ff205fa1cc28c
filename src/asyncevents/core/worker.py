"""The worker: consumes the trigger and delivery routes until a limit or a signal.

The main thread owns the transport's consuming connection (kombu is not
thread-safe): it receives messages, already decoded and checked by the
transport, hands each to its route's handler in a thread pool, and acks it
once the handler has recorded its outcome. A message whose handler fails is
returned to the queue, never dropped; only a message that no handler could
ever take (not JSON, fields missing, a delivery that does not exist) is
dropped, with an error in the log.

When the broker goes away the worker reconnects by itself, waiting longer
after each failed try (0.5 s doubling up to 30 s), and logs both the loss and
the recovery. Messages it held on the lost connection are not acked: the
broker hands them out again, and the deliverer drops those already done.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog

from asyncevents.core.messages import Message, Route
from asyncevents.core.retry import RetryManagement, misconfiguration
from asyncevents.core.store import Store
from asyncevents.core.transport import Consumption, Received, Transport, describe
from asyncevents.errors import AsyncEventsError, ConfigError, NotFound

__all__ = ["Handler", "Presence", "Worker", "WorkerLimits", "WorkerReport"]

log = structlog.get_logger("asyncevents.worker")

#: Handles the messages of one route.
Handler = Callable[[Message], None]

_PUMP_EVERY = 0.2
# Acks wait for the loop to come round: a short turn keeps them (and the next
# message, which the prefetch window holds back until then) prompt.
_DRAIN_TIMEOUT = 0.05
_BUSY_DRAIN = 0.002
_RECONNECT_FIRST = 0.5
_RECONNECT_MAX = 30.0


@dataclass(frozen=True)
class WorkerLimits:
    """When a worker stops by itself (None: never)."""

    concurrency: int = 1
    limit: int | None = None
    time_limit: float | None = None
    memory_limit_mb: float | None = None
    max_idle_time: float | None = None


@dataclass
class WorkerReport:
    """What a worker did before it stopped."""

    handled: int = 0
    failed: int = 0
    dropped: int = 0
    """Messages no handler could take (undecodable, malformed, pointing at nothing)."""
    reconnects: int = 0
    reason: str = ""


class Presence:
    """The worker's entry in the store's list of live workers (``asyncevents workers``).

    A store that cannot be reached never stops the worker: the entry is only
    a report, and the next beat tries again.
    """

    #: Seconds between heartbeats.
    every = 5.0

    def __init__(self, store: Store, routes: list[Route], concurrency: int) -> None:
        self.store = store
        self.id = str(uuid.uuid4())
        self.routes = routes
        self.concurrency = concurrency
        self._registered = False

    def beat(self, in_flight: int, handled: int) -> bool:
        """Register or refresh the entry; True when ``stop-workers`` asked us to stop."""
        try:
            if not self._registered:
                self.store.register_worker(self.id, host=socket.gethostname(), pid=os.getpid(),
                                           queues=list(self.routes),
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


@dataclass
class _Periodic:
    every: float
    due: float
    task: Callable[[], object]


def rss_mb() -> float:
    """This process's resident memory in MB."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576
    except (OSError, ValueError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Worker:
    """Runs the dispatcher and the deliverer over the broker's queues."""

    def __init__(self, transport: Transport, retries: RetryManagement,
                 handlers: Mapping[Route, Handler], limits: WorkerLimits | None = None,
                 on_exit: Callable[[], None] | None = None,
                 periodic: list[tuple[float, Callable[[], object]]] | None = None,
                 presence: Presence | None = None,
                 dead_handlers: Mapping[Route, Handler] | None = None) -> None:
        self.transport = transport
        # What to do with a message the transport gave up on (recorded as dead).
        self.dead_handlers = dict(dead_handlers or {})
        self.presence = presence
        self.on_exit = on_exit
        # Housekeeping run from the main loop, the first time after one period.
        self._periodic = [_Periodic(every, time.monotonic() + every, task)
                          for every, task in periodic or []]
        if presence is not None:  # at once, then every few seconds
            self._periodic.append(_Periodic(presence.every, time.monotonic(), self._beat))
        self.retries = retries
        self.handlers = dict(handlers)
        self.limits = limits or WorkerLimits()
        self.report = WorkerReport()
        self._stop = threading.Event()
        # (message, its handler's future, the connection it came on); settled
        # by the main thread, which alone touches the consuming connection.
        self._done: queue.Queue[tuple[Received, Future[bool | None], int]] = queue.Queue()
        self._futures: set[Future[bool | None]] = set()
        self._generation = 0
        self._lost_at: float | None = None
        self._in_flight = 0
        self._received = 0
        self._last_activity = time.monotonic()
        self._last_pump = 0.0

    def stop(self, reason: str = "stopped") -> None:
        """Ask the worker to finish what it holds and return."""
        if not self._stop.is_set():
            self.report.reason = reason
            self._stop.set()

    def _beat(self) -> None:
        assert self.presence is not None
        if self.presence.beat(self._in_flight, self.report.handled):
            self.stop("asked to stop (stop-workers)")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop(f"signal {signal.Signals(signum).name}")

    def run(self) -> WorkerReport:
        """Consume until a limit, a signal or ``stop()``; return the report."""
        previous = self._install_signals()
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=max(1, self.limits.concurrency),
                                  thread_name_prefix="asyncevents-worker")
        log.info("worker started", transport=self.transport.safe_url(),
                 concurrency=self.limits.concurrency)
        errors = self.transport.connection_errors
        retry_in = _RECONNECT_FIRST
        try:
            while not self._stop.is_set():
                try:
                    self._consume(pool, started)
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
                    self._cancel_queued()  # the broker hands those out again
                    log.warning("broker connection lost, reconnecting", error=describe(exc),
                                retry_in=retry_in, attempt=self.report.reconnects)
                    self._stop.wait(retry_in)
        finally:
            pool.shutdown(wait=True)
            self._restore_signals(previous)
            if self.presence is not None:
                self.presence.leave()
            if self.on_exit is not None:
                self.on_exit()
        log.info("worker stopped", reason=self.report.reason, handled=self.report.handled,
                 failed=self.report.failed, dropped=self.report.dropped)
        return self.report

    def _consume(self, pool: ThreadPoolExecutor, started: float) -> None:
        self._generation += 1
        generation = self._generation
        # One try to connect here: the back-off between tries is run()'s.
        session = self.transport.consume(
            list(self.handlers), lambda received: self._on_message(pool, received, generation),
            self._on_dropped,
            # Twice the threads: while slow deliveries hold their threads, the
            # next messages wait in the pool instead of one fetch per ack.
            prefetch=2 * max(1, self.limits.concurrency),
        )
        try:
            while not self._stop.is_set():
                # While handlers run, come back at once to ack what they
                # finish: the broker sends nothing more until we do.
                session.drain(_BUSY_DRAIN if self._in_flight else _DRAIN_TIMEOUT)
                session.heartbeat()
                self._restored()  # only once a full turn worked
                self._ack_done()
                self._pump()
                self._housekeeping()
                self._check_limits(started)
            session.cancel()
            self._cancel_queued()
            self._finish_in_flight(session)
        finally:
            session.close()

    def _cancel_queued(self) -> None:
        """Give back the prefetched messages no thread has started on."""
        for future in list(self._futures):
            future.cancel()  # its callback runs now: the message is requeued

    def _restored(self) -> None:
        if self._lost_at is not None:
            log.warning("broker connection restored", transport=self.transport.safe_url(),
                        down_for=round(time.monotonic() - self._lost_at, 1),
                        attempts=self.report.reconnects)
            self._lost_at = None

    def _on_message(self, pool: ThreadPoolExecutor, received: Received,
                    generation: int) -> None:
        self._in_flight += 1
        self._received += 1
        self._last_activity = time.monotonic()
        future = pool.submit(self._work, received.route, received.message, received.dead)
        self._futures.add(future)
        future.add_done_callback(lambda f: self._done.put((received, f, generation)))
        if self.limits.limit is not None and self._received >= self.limits.limit:
            self.stop("message limit reached")

    def _on_dropped(self, _problem: str) -> None:
        # The transport dropped a message no handler could take, and logged why.
        self.report.dropped += 1

    def _work(self, route: Route, message: Message, dead: bool = False) -> bool | None:
        """Run the handler: True when done, False to requeue, None to drop."""
        bound = log.bind(route=route)
        try:
            handlers = self.dead_handlers if dead else self.handlers
            handlers[route](message)
        except NotFound as exc:
            # The delivery (or its subscription) is gone for good: purged, or
            # the message belongs to another installation sharing the broker.
            bound.error("malformed message dropped", problem=str(exc))
            return None
        except Exception as exc:
            bound.error("handler failed, message returned to the queue",
                        error=f"{type(exc).__name__}: {exc}")
            # A short pause so a database outage does not turn into a hot loop.
            time.sleep(1.0)
            return False
        return True

    def _ack_done(self, block: bool = False) -> None:
        while True:
            try:
                received, future, generation = self._done.get(
                    block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return
            block = False
            self._futures.discard(future)
            self._in_flight -= 1
            self._last_activity = time.monotonic()
            outcome = _outcome(future)
            if outcome is True:
                self.report.handled += 1
            elif outcome is None:
                self.report.dropped += 1
            elif not future.cancelled():
                self.report.failed += 1
            try:
                _settle(received, outcome)
            except Exception as exc:
                if generation == self._generation:
                    raise  # this connection is failing: run() reconnects
                # It came on a connection that is gone, so the broker has
                # already put it back in line (a SQL lease runs out).
                log.info("message from a lost connection left to the broker",
                         handled=outcome is not False, error=describe(exc))

    def _finish_in_flight(self, session: Consumption) -> None:
        while self._in_flight > 0:
            self._ack_done(block=True)
            session.heartbeat()  # a long delivery keeps its lease while we wait

    def _pump(self) -> None:
        now = time.monotonic()
        if now - self._last_pump < _PUMP_EVERY:
            return
        self._last_pump = now
        try:
            if self.retries.pump():
                self._last_activity = time.monotonic()
        except Exception as exc:
            log.error("retry pump failed", error=f"{type(exc).__name__}: {exc}")

    def _housekeeping(self) -> None:
        now = time.monotonic()
        for entry in self._periodic:
            if now < entry.due:
                continue
            entry.due = now + entry.every
            try:
                entry.task()
            except Exception as exc:
                log.error("housekeeping failed", error=f"{type(exc).__name__}: {exc}")

    def _check_limits(self, started: float) -> None:
        limits, now = self.limits, time.monotonic()
        if limits.time_limit is not None and now - started >= limits.time_limit:
            self.stop("time limit reached")
        elif limits.memory_limit_mb is not None and rss_mb() >= limits.memory_limit_mb:
            self.stop("memory limit reached")
        elif (limits.max_idle_time is not None and self._in_flight == 0
              and now - self._last_activity >= limits.max_idle_time):
            due = self.retries.seconds_until_due()
            if due is None or due > limits.max_idle_time:
                self.stop("idle")

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


def _outcome(future: Future[bool | None]) -> bool | None:
    """True: ack; False: requeue (failed, or never started); None: drop."""
    if future.cancelled() or future.exception() is not None:
        return False
    return future.result()


def _settle(received: Received, outcome: bool | None) -> None:
    if outcome is False:
        received.requeue()
    elif outcome is None:
        received.drop()
    else:
        received.ack()
