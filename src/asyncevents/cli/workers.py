"""``asyncevents workers`` and ``asyncevents stop-workers``."""

from __future__ import annotations

from datetime import datetime

import click

from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.core.clock import utcnow
from asyncevents.core.store import WorkerInfo
from asyncevents.core.worker.presence import GONE_AFTER

__all__ = ["stop_workers", "workers"]


def _ago(moment: datetime) -> str:
    return f"{max(0.0, (utcnow() - moment).total_seconds()):.0f} s ago"


def _gone(worker: WorkerInfo) -> bool:
    """No heartbeat for three periods: killed, or cut off from the store."""
    return (utcnow() - worker.heartbeat_at).total_seconds() > GONE_AFTER


@click.command()
@json_option
def workers(as_json: bool) -> None:
    """Workers: host, pid, queues, in flight, last heartbeat; a silent one is marked gone."""
    found = get_app().store.list_workers()
    if as_json:
        print_json([{**w.public(), "gone": _gone(w)} for w in found])
        return
    rows = [{"id": w.id[:8], "host": w.host, "pid": w.pid, "queues": ",".join(w.queues),
             "concurrency": w.concurrency, "in flight": w.in_flight, "handled": w.handled,
             "started": w.started_at.isoformat(timespec="seconds"),
             "heartbeat": _ago(w.heartbeat_at),
             "state": "gone" if _gone(w) else "stopping" if w.stop_requested else "live"}
            for w in found]
    print_table(rows, ("id", "host", "pid", "queues", "concurrency", "in flight", "handled",
                       "started", "heartbeat", "state"), title="Workers")
    if not any(row["state"] != "gone" for row in rows):
        console.print("no live worker")
    if any(row["state"] == "gone" for row in rows):
        console.print(f"gone: no heartbeat for {GONE_AFTER:g} s (killed, or cut off from the "
                      "store); the entry is forgotten after an hour")


@click.command("stop-workers")
@json_option
def stop_workers(as_json: bool) -> None:
    """Ask every worker, on any host, to finish what it holds and exit."""
    store = get_app().store
    gone = sum(1 for w in store.list_workers() if _gone(w) and not w.stop_requested)
    asked = store.request_worker_stop(alive_within=GONE_AFTER)
    if as_json:
        print_json({"asked": asked, "gone": gone})
        return
    console.print(f"{asked} worker(s) asked to stop; each exits after its next heartbeat "
                  "once its messages are done")
    if gone:
        console.print(f"{gone} gone worker(s) not counted (no heartbeat for {GONE_AFTER:g} s)")
