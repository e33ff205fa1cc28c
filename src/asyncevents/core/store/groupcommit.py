"""Group commit: the writes of many worker threads in one transaction.

Every delivery costs two writes (its row, then its attempt). Made one by
one, each is a transaction of its own, and the fixed cost of a transaction
(a pooled connection, BEGIN, COMMIT, SQLAlchemy's execution set-up) is most
of the work. With a :class:`GroupCommit`, a thread hands its write to one
writer thread and waits: the writer takes everything that queued up while
its last transaction ran and writes it in one transaction, one statement
per kind with many rows. Nobody waits for a timer: a write that finds the
writer idle goes at once, so batching only happens under load.

Each caller still returns only once its own write is committed (or raises
its own error), so nothing is acked before it is stored. When a batch fails
(a unique key hit by a redelivered message, a bad row), every write of it is
run again on its own, so one write's error is only ever its caller's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

__all__ = ["GroupCommit", "Kind"]

_I = TypeVar("_I")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Kind(Generic[_I, _R]):
    """One kind of write: how to write many in a transaction, and one on its own."""

    name: str
    many: Callable[[Connection, Sequence[_I]], list[_R]]
    """Writes every item in ``conn``'s transaction; a result per item, in order."""
    one: Callable[[_I], _R]
    """Writes one item in a transaction of its own (the fallback)."""
    key: Callable[[_I], object] | None = None
    """Items with the same key never share a batch (they would read each other)."""


@dataclass
class _Job:
    kind: Kind[Any, Any]
    item: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """A writer thread that commits the queued writes of many threads together."""

    def __init__(self, begin: Callable[[], Any], max_batch: int = 100) -> None:
        self._begin = begin  # a context manager factory yielding a Connection in a transaction
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        self.writes = 0

    def write(self, kind: Kind[_I, _R], item: _I) -> _R:
        """Write ``item`` with the others queued now; return once it is committed."""
        job = _Job(kind, item)
        with self._lock:
            if self._closed:
                return kind.one(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="asyncevents-group-commit")
                self._thread.start()
            self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        result: _R = job.result
        return result

    def close(self) -> None:
        """Finish the queued writes and stop the writer (later writes run on their own)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _take(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, stop = [first], False
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _run(self) -> None:
        while True:
            jobs, stop = self._take()
            if jobs:
                self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[_Job]) -> None:
        groups: dict[str, list[_Job]] = {}
        alone: list[_Job] = []
        seen: set[tuple[str, object]] = set()
        for job in jobs:
            key = job.kind.key
            if key is not None:
                mark = (job.kind.name, key(job.item))
                if mark in seen:
                    alone.append(job)
                    continue
                seen.add(mark)
            groups.setdefault(job.kind.name, []).append(job)
        batched = [group for group in groups.values() if len(group) > 1]
        alone.extend(group[0] for group in groups.values() if len(group) == 1)
        if batched:
            try:
                with self._begin() as conn:
                    results = [group[0].kind.many(conn, [j.item for j in group])
                               for group in batched]
            except BaseException:  # each write's own error goes to its caller, below
                alone.extend(job for group in batched for job in group)
            else:
                self.batches += 1
                for group, found in zip(batched, results, strict=True):
                    for job, result in zip(group, found, strict=True):
                        job.result = result
                        job.done.set()
        for job in alone:
            try:
                job.result = job.kind.one(job.item)
            except BaseException as exc:  # re-raised in the caller's thread
                job.error = exc
            job.done.set()
        self.writes += len(jobs)
