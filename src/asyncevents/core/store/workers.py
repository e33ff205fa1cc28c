"""Live workers: each one registers, beats every few seconds and leaves when it stops.

``asyncevents workers`` lists them, a silent one (killed: it never left) as
gone; ``asyncevents stop-workers`` asks every one of them to finish what it
holds and exit (it sees the request at its next heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from asyncevents.core.clock import utcnow
from asyncevents.core.store.base import StoreBase
from asyncevents.core.store.schema import workers

__all__ = ["WorkerInfo", "WorkerQueries"]

#: A worker whose last heartbeat is older than this is presumed dead and forgotten.
FORGET_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as it last reported itself."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    in_flight: int
    handled: int
    started_at: datetime
    heartbeat_at: datetime
    stop_requested: bool

    def public(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"id": self.id, "host": self.host, "pid": self.pid, "queues": self.queues,
                "concurrency": self.concurrency, "in_flight": self.in_flight,
                "handled": self.handled, "started_at": self.started_at.isoformat(),
                "heartbeat_at": self.heartbeat_at.isoformat(),
                "stop_requested": self.stop_requested}


def _info(row: Any) -> WorkerInfo:
    return WorkerInfo(id=row.id, host=row.host, pid=row.pid, queues=list(row.queues or ()),
                      concurrency=row.concurrency, in_flight=row.in_flight,
                      handled=row.handled, started_at=row.started_at,
                      heartbeat_at=row.heartbeat_at,
                      stop_requested=row.stop_requested_at is not None)


class WorkerQueries(StoreBase):
    """The store's record of live workers."""

    def register_worker(self, worker_id: str, *, host: str, pid: int, queues: list[str],
                        concurrency: int) -> None:
        """Record a worker that just started."""
        now = utcnow()
        with self.begin() as conn:
            conn.execute(delete(workers).where(workers.c.heartbeat_at < now - FORGET_AFTER))
            conn.execute(insert(workers).values(
                id=worker_id, host=host, pid=pid, queues=queues, concurrency=concurrency,
                in_flight=0, handled=0, started_at=now, heartbeat_at=now,
                stop_requested_at=None))

    def worker_heartbeat(self, worker_id: str, *, in_flight: int, handled: int) -> bool:
        """Record that the worker is alive; True when it was asked to stop."""
        with self.begin() as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id).values(
                heartbeat_at=utcnow(), in_flight=in_flight, handled=handled))
            asked = conn.execute(select(workers.c.stop_requested_at)
                                 .where(workers.c.id == worker_id)).scalar()
        return asked is not None

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped."""
        with self.begin() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    def list_workers(self, *, alive_within: float | None = None) -> list[WorkerInfo]:
        """Workers, oldest first; only those that beat within ``alive_within`` seconds."""
        query = select(workers).order_by(workers.c.started_at, workers.c.id)
        if alive_within is not None:
            query = query.where(
                workers.c.heartbeat_at >= utcnow() - timedelta(seconds=alive_within))
        with self.begin() as conn:
            return [_info(row) for row in conn.execute(query)]

    def request_worker_stop(self, *, alive_within: float | None = None) -> int:
        """Ask every registered worker to finish and exit; return how many were asked.

        With ``alive_within``, only the workers that beat within that many
        seconds are counted: a silent one (killed, most likely) is asked too,
        and sees the request should it beat again, but it is not one that
        will stop.
        """
        now = utcnow()
        pending = workers.c.stop_requested_at.is_(None)
        with self.begin() as conn:
            live = None
            if alive_within is not None:
                recent = workers.c.heartbeat_at >= now - timedelta(seconds=alive_within)
                live = conn.execute(select(func.count()).select_from(workers)
                                    .where(pending, recent)).scalar_one()
            result = conn.execute(update(workers).where(pending).values(stop_requested_at=now))
        return int(result.rowcount or 0) if live is None else int(live)
