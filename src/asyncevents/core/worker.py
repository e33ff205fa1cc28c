"""The worker: consumes the trigger and delivery queues until a limit or a signal.

The main thread owns the kombu connection (kombu is not thread-safe): it
receives messages, hands each to a thread pool, and acks it once the handler
has recorded its outcome. A message whose handler fails is returned to the
queue, never dropped.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog
from kombu import Connection, Consumer, Message

from asyncevents.core.retrymanagement import RetryManagement
from asyncevents.core.transport import Broker

__all__ = ["Worker", "WorkerLimits", "WorkerReport"]

log = structlog.get_logger("asyncevents.worker")

Handler = Callable[[dict[str, Any]], None]

_PUMP_EVERY = 0.2
_DRAIN_TIMEOUT = 0.2


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
    reason: str = ""


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

    def __init__(self, broker: Broker, retries: RetryManagement, dispatch: Handler,
                 deliver: Handler, limits: WorkerLimits | None = None,
                 on_exit: Callable[[], None] | None = None,
                 periodic: list[tuple[float, Callable[[], object]]] | None = None) -> None:
        self.broker = broker
        self.on_exit = on_exit
        # Housekeeping run from the main loop, the first time after one period.
        self._periodic = [_Periodic(every, time.monotonic() + every, task)
                          for every, task in periodic or []]
        self.retries = retries
        self.handlers: dict[str, Handler] = {"trigger": dispatch, "deliver": deliver}
        self.limits = limits or WorkerLimits()
        self.report = WorkerReport()
        self._stop = threading.Event()
        self._done: queue.Queue[tuple[Message, bool]] = queue.Queue()
        self._in_flight = 0
        self._received = 0
        self._last_activity = time.monotonic()
        self._last_pump = 0.0

    def stop(self, reason: str = "stopped") -> None:
        """Ask the worker to finish what it holds and return."""
        if not self._stop.is_set():
            self.report.reason = reason
            self._stop.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop(f"signal {signal.Signals(signum).name}")

    def run(self) -> WorkerReport:
        """Consume until a limit, a signal or ``stop()``; return the report."""
        previous = self._install_signals()
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=max(1, self.limits.concurrency),
                                  thread_name_prefix="asyncevents-worker")
        log.info("worker started", transport=self.broker.safe_url(),
                 concurrency=self.limits.concurrency)
        errors = self._connection_errors()
        try:
            while not self._stop.is_set():
                try:
                    self._consume(pool, started)
                except errors as exc:
                    if self._stop.is_set():
                        break
                    log.warning("broker connection lost, reconnecting", error=str(exc))
                    self._stop.wait(1.0)
        finally:
            pool.shutdown(wait=True)
            self._restore_signals(previous)
            if self.on_exit is not None:
                self.on_exit()
        log.info("worker stopped", reason=self.report.reason, handled=self.report.handled,
                 failed=self.report.failed)
        return self.report

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self.broker.connect()
        try:
            errors = (*tuple(conn.connection_errors), ConnectionError, OSError)
        finally:
            conn.release()
        return errors

    def _consume(self, pool: ThreadPoolExecutor, started: float) -> None:
        conn: Connection = self.broker.connect()
        try:
            conn.ensure_connection(max_retries=3)
            channel = conn.channel()
            consumer = Consumer(channel, queues=self.broker.topology.queues, accept=["json"],
                                callbacks=[lambda body, msg: self._on_message(pool, body, msg)],
                                prefetch_count=max(1, self.limits.concurrency))
            with consumer:
                while not self._stop.is_set():
                    try:
                        conn.drain_events(timeout=_DRAIN_TIMEOUT)
                    except TimeoutError:
                        pass
                    except socket.timeout:  # noqa: UP041 - kombu raises either
                        pass
                    self._ack_done()
                    self._pump()
                    self._housekeeping()
                    self._check_limits(started)
                consumer.cancel()
                self._finish_in_flight()
        finally:
            conn.release()

    def _on_message(self, pool: ThreadPoolExecutor, body: Any, message: Message) -> None:
        self._in_flight += 1
        self._received += 1
        self._last_activity = time.monotonic()
        route = "deliver" if isinstance(body, dict) and "delivery_id" in body else "trigger"
        future = pool.submit(self._work, route, body)
        future.add_done_callback(lambda f: self._done.put((message, _succeeded(f))))
        if self.limits.limit is not None and self._received >= self.limits.limit:
            self.stop("message limit reached")

    def _work(self, route: str, body: Any) -> bool:
        bound = log.bind(route=route)
        if not isinstance(body, dict):
            bound.error("malformed message dropped", body=repr(body)[:200])
            return True
        try:
            self.handlers[route](body)
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
                message, ok = self._done.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                return
            block = False
            self._in_flight -= 1
            self._last_activity = time.monotonic()
            if ok:
                self.report.handled += 1
                message.ack()
            else:
                self.report.failed += 1
                message.requeue()

    def _finish_in_flight(self) -> None:
        while self._in_flight > 0:
            self._ack_done(block=True)

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


def _succeeded(future: Future[bool]) -> bool:
    return future.exception() is None and bool(future.result())
