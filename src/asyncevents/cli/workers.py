"""``asyncevents workers`` and ``asyncevents stop-workers``."""

from __future__ import annotations

from datetime import datetime

import click

from asyncevents.cli.context import get_app, json_option
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.core.clock import utcnow

__all__ = ["stop_workers", "workers"]

#: A worker that has not beaten for this long (seconds) is not listed as live.
ALIVE_WITHIN = 15.0


def _ago(moment: datetime) -> str:
    return f"{max(0.0, (utcnow() - moment).total_seconds()):.0f} s ago"


@click.command()
@json_option
def workers(as_json: bool) -> None:
    """Live workers: host, pid, queues, in flight, last heartbeat."""
    found = get_app().store.list_workers(alive_within=ALIVE_WITHIN)
    if as_json:
        print_json([w.public() for w in found])
        return
    rows = [{"id": w.id[:8], "host": w.host, "pid": w.pid, "queues": ",".join(w.queues),
             "concurrency": w.concurrency, "in flight": w.in_flight, "handled": w.handled,
             "started": w.started_at.isoformat(timespec="seconds"),
             "heartbeat": _ago(w.heartbeat_at),
             "stopping": "yes" if w.stop_requested else ""} for w in found]
    print_table(rows, ("id", "host", "pid", "queues", "concurrency", "in flight", "handled",
                       "started", "heartbeat", "stopping"), title="Workers")
    if not rows:
        console.print("no live worker")


@click.command("stop-workers")
@json_option
def stop_workers(as_json: bool) -> None:
    """Ask every worker, on any host, to finish what it holds and exit."""
    asked = get_app().store.request_worker_stop()
    if as_json:
        print_json({"asked": asked})
    else:
        console.print(f"{asked} worker(s) asked to stop; each exits after its next heartbeat "
                      "once its messages are done")
