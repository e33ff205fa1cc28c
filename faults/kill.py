"""kill -9 of a worker mid-stream, several times in one run.

Publish a batch, start a worker, SIGKILL it once a share of the batch has
arrived, start the next one, and so on; a last worker drains the rest. What
a killed worker held is redelivered (RabbitMQ: the channel closed unacked;
SQL queue: the lease ran out), so nothing is lost and the only duplicates are
deliveries the receiver got before the worker could record them: same
``webhook-id``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["KillFigures", "kill_scenario", "run"]


@dataclass
class KillFigures:
    """A kill run's figures."""

    published: int
    delivered: int
    duplicated: int
    lost: int
    kills: int
    unidentifiable: int


def kill_scenario(stack: Stack, receiver: Receiver, *, events: int, kills: int,
                  timeout: float = 180.0) -> KillFigures:
    """Publish ``events``, SIGKILL the worker ``kills`` times mid-stream, then drain."""
    url = receiver.url("ok", "kill")
    stack.subscribe(url)
    event_ids = [stack.app.publish("fault.kill", {"n": n}) for n in range(events)]
    deadline = time.monotonic() + timeout
    done = 0
    for k in range(kills):
        worker = stack.worker(name="killed")
        target = (k + 1) * events // (kills + 2)
        while receiver.delivered() < target and time.monotonic() < deadline:
            if not worker.alive():
                break
            time.sleep(0.02)
        worker.kill()
        done += 1
    # Long enough for the leases of the killed workers' rows to run out.
    stack.drain(idle=stack.settings.lease_seconds + 3,
                time_limit=max(10.0, deadline - time.monotonic()))
    counted = tally(receiver.snapshot(), event_ids, [_path(url)])
    return KillFigures(counted.published, counted.delivered, counted.duplicated, counted.lost,
                       done, counted.unidentifiable)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """The fault-table row for ``transport``."""
    events, kills = (60, 2) if short else (300, 4)
    row = Row(f"kill -9 worker x{kills}", transport)
    receiver = Receiver()
    try:
        with Stack.open(transport, directory, lease_seconds=2.0) as stack:
            figures = kill_scenario(stack, receiver, events=events, kills=kills)
    finally:
        receiver.close()
    row.published, row.delivered = figures.published, figures.delivered
    row.duplicated, row.lost = figures.duplicated, figures.lost
    row.check(figures.kills == kills, f"only {figures.kills} of {kills} kills happened")
    row.check(figures.unidentifiable == 0,
              f"{figures.unidentifiable} duplicates without one webhook-id")
    return row
