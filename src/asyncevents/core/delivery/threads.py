"""The engine's thread pools: blocking I/O (store, broker) and synchronous sinks.

The event loop owns the delivery state; these threads only run calls handed to
them and give back their results, touching nothing of the loop's.

A synchronous sink's call has a deadline (:meth:`Threads.sink`). A thread
cannot be killed, so a call past its deadline goes on in its thread until the
sink returns, while its attempt ends at once (:class:`SinkOverrun`) and its
slot is free again. Such a thread is counted as stuck. The sink pool has a
spare thread for each slot, so as many calls may be stuck as the worker has
slots before new calls have to wait for a thread, and it never grows beyond
that: stuck calls cannot pile up threads without bound. A call that found no
thread before its deadline never starts. The sink threads are daemons, so one
stuck for good does not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

__all__ = ["SinkOverrun", "Threads"]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_IO_THREADS = 4


class SinkOverrun(Exception):
    """A synchronous sink's call did not end within the attempt's deadline."""

    def __init__(self, deadline: float, *, started: bool, stuck: int) -> None:
        self.deadline = deadline
        self.started = started
        self.stuck = stuck
        if started:
            text = (f"no answer within {deadline:g} s: the attempt's deadline "
                    "(ASYNCEVENTS_ATTEMPT_DEADLINE) ended it")
        else:
            text = (f"no sink thread free within {deadline:g} s ({stuck} stuck in sink calls "
                    "past their deadline); the sink was not called")
        super().__init__(text)


class _SinkPool:
    """Up to ``size`` daemon threads taking calls from one queue, started when needed."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self._name = name
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue())
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        """Queue ``fn``; a thread takes it (one is started if none is idle and there is room)."""
        future: Future[_T] = Future()
        self._work.put((future, fn))
        if self._idle.acquire(blocking=False):
            return future  # an idle thread takes it
        with self._lock:
            if len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"{self._name}_{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            self._idle.release()

    def shutdown(self, timeout: float | None) -> None:
        """Stop the threads once the calls they run are done, waiting at most ``timeout``.

        A thread still in a call then is left behind (a daemon: it ends with the process).
        """
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        end = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))


class Threads:
    """The engine's thread pools: blocking I/O (store, broker) and synchronous sinks."""

    def __init__(self, sink_threads: int) -> None:
        self._io = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="asyncevents-io")
        slots = max(1, sink_threads)
        self._sinks = _SinkPool(2 * slots, "asyncevents-sink")
        self._stuck = 0
        self._lock = threading.Lock()
        self._longest = 0.0  # the longest deadline given: how long shutdown waits at most

    @property
    def stuck(self) -> int:
        """Sink threads still in a call whose attempt ended at its deadline."""
        with self._lock:
            return self._stuck

    @property
    def sink_threads(self) -> int:
        """The most sink threads there will ever be (twice the slots)."""
        return self._sinks.size

    async def io(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a store or broker call in an I/O thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._io, lambda: fn(*args, **kwargs))

    async def sink(self, deadline: float, fn: Callable[_P, _T], /,
                   *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a synchronous sink's call in a sink thread, for at most ``deadline`` seconds.

        Past it, :class:`SinkOverrun`: the call, if it started, goes on in its
        thread (counted in :attr:`stuck` until it returns); if it had not
        started, it never will.
        """
        self._longest = max(self._longest, deadline)
        done = self._sinks.submit(lambda: fn(*args, **kwargs))
        waiting = asyncio.wrap_future(done)
        try:
            finished, _ = await asyncio.wait({waiting}, timeout=deadline)
        except asyncio.CancelledError:
            done.cancel()  # the engine stops: an unstarted call never starts
            raise
        if finished:
            return waiting.result()
        waiting.add_done_callback(_retrieve)
        if done.cancel():
            raise SinkOverrun(deadline, started=False, stuck=self.stuck)
        if done.done():
            return done.result()  # it returned just now
        with self._lock:
            self._stuck += 1
        done.add_done_callback(self._returned)
        raise SinkOverrun(deadline, started=True, stuck=self.stuck)

    def _returned(self, _: Future[Any]) -> None:
        with self._lock:
            self._stuck -= 1

    def shutdown(self) -> None:
        """Wait for the running calls and stop the threads.

        A sink call stuck past its deadline is waited for at most that long
        again, then left to its daemon thread.
        """
        self._io.shutdown(wait=True)
        self._sinks.shutdown(self._longest if self._longest else None)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Read the outcome of a call nobody waits for any more, so that asyncio does
    # not log "exception was never retrieved" for it.
    if not future.cancelled():
        future.exception()
