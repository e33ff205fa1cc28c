"""A worker's housekeeping: named periodic tasks on one thread of their own.

The retry pump, the presence heartbeat, the health flush, the outbox sweep
and the hourly clean-up are slow at times (a store that answers late, a
purge of a million rows): run on the consuming thread they held back its
acks and the broker's heartbeats. Here they run one after the other on the
``asyncevents-housekeeping`` daemon thread, each every ``every`` seconds
(counted from the end of its last run, so a slow one never piles up). A
task that raises is logged and tried again at its next period; it never
ends the thread. A slow task delays the other tasks, never the acks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog

from asyncevents.core.transport import describe

__all__ = ["THREAD_NAME", "Housekeeping", "Periodic"]

log = structlog.get_logger("asyncevents.worker")

#: The name of the housekeeping thread (``threading.current_thread().name`` in a task).
THREAD_NAME = "asyncevents-housekeeping"
# How long stop() waits for the task running then to end (seconds).
_JOIN_TIMEOUT = 10.0


@dataclass
class Periodic:
    """A task run every ``every`` seconds: first after ``first`` seconds (None: one period)."""

    name: str
    every: float
    task: Callable[[], object]
    first: float | None = None
    due: float = field(default=0.0, init=False)
    #: Runs, and runs that raised (for tests and the log).
    runs: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)


class Housekeeping:
    """Runs :class:`Periodic` tasks on a daemon thread until :meth:`stop`."""

    def __init__(self, tasks: Iterable[Periodic] = (), *, name: str = THREAD_NAME) -> None:
        self.name = name
        self.tasks: list[Periodic] = list(tasks)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, every: float, task: Callable[[], object], *,
            first: float | None = None) -> Periodic:
        """Add a task (before :meth:`start`)."""
        if self._thread is not None:
            raise RuntimeError("housekeeping already started: add its tasks before")
        periodic = Periodic(name, every, task, first)
        self.tasks.append(periodic)
        return periodic

    @property
    def running(self) -> bool:
        """True while the thread lives."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (a no-op without tasks, or when it runs already)."""
        if self._thread is not None or not self.tasks:
            return
        now = time.monotonic()
        for periodic in self.tasks:
            periodic.due = now + (periodic.every if periodic.first is None else periodic.first)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = _JOIN_TIMEOUT) -> bool:
        """Run no more tasks; wait up to ``timeout`` seconds for the one running to end.

        True when the thread has ended. A task still running after that is
        left to finish on its own (the thread is a daemon: it never holds the
        process up).
        """
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("a housekeeping task is still running; left to finish on its own",
                        waited=timeout)
            return False
        self._thread = None
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            periodic = min(self.tasks, key=lambda p: p.due)
            wait = periodic.due - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                continue
            self._once(periodic)
            periodic.due = time.monotonic() + periodic.every

    def _once(self, periodic: Periodic) -> None:
        periodic.runs += 1
        try:
            periodic.task()
        except Exception as exc:  # logged, tried again next period: the thread lives on
            periodic.failures += 1
            log.error("housekeeping task failed", task=periodic.name, error=describe(exc),
                      retry_in=periodic.every)
