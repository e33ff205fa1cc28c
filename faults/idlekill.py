"""kill -9 of a worker on the SQL queue, then a fresh worker with ``--max-idle-time 2``.

The killed worker held leased rows; the fresh one, started right after the kill,
finds nothing visible (the rows come back when their lease ends, 10 s at the
default settings, or sooner when a worker reclaims the leases of a worker silent
for three heartbeats). It must not take that for an idle queue: it waits for
them, delivers every event and only then idles out. Nothing else drains the
queue: what it leaves is lost. The row reports the time to recovery (from the
kill until the last held message reached the receiver).
"""

from __future__ import annotations

import time
from pathlib import Path

from faults.figures import Row, tally
from faults.kill import HeldWatch
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["run"]

_PATH = "/ok/idlekill"
_IDLE = 2.0


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Kill a worker mid-stream; the next one has ``--max-idle-time 2`` and must finish."""
    row = Row("dead worker's leases with an idle-exit worker", transport)
    events = 60 if short else 300
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{_PATH}")
            event_ids = [stack.app.publish("fault.idlekill", {"n": n}) for n in range(events)]
            watch = HeldWatch.for_stack(stack)
            if watch is None:
                raise ValueError(f"{transport}: this fault is about the SQL queue's leases")
            watch.start()
            try:
                killed = stack.worker(name="killed")
                receiver.wait_for(events // 3, timeout=60)
                killed.kill()
                killed_at = time.monotonic()
                record = watch.killed(1, killed_at)
                idle = stack.worker("--max-idle-time", f"{_IDLE:g}", "--time-limit", "120",
                                    name="idle")
                code = idle.wait(timeout=150)
                exited_after = time.monotonic() - killed_at
                if code is None:
                    idle.kill()
                log = idle.text()
            finally:
                hits = receiver.snapshot()
                (record,) = watch.stop(hits)
            lease = stack.settings.lease_seconds
        counted = tally(hits, event_ids, [_PATH])
    finally:
        receiver.close()
    row.add(counted)
    recovered = record.first_request_after
    row.notes.append(
        f"default settings (lease {lease:g} s); the killed worker held {record.held} messages; "
        f"back in the queue after {_seconds(record.back_after)}, "
        f"time to recovery (kill until the last of them reached the receiver) "
        f"{_seconds(recovered)}; the --max-idle-time {_IDLE:g} worker exited with {code} "
        f"{exited_after:.1f} s after the kill")
    row.check(record.held > 0, "the killed worker held nothing: the run proves nothing")
    row.check(code == 0, f"the idle-exit worker exited with {code}, not 0 by itself")
    row.check("reason=idle" in log, "the idle-exit worker did not stop for being idle")
    row.check(counted.lost == 0,
              f"the idle-exit worker left {counted.lost} events undelivered when it exited")
    row.check(recovered is not None and recovered <= lease + 5,
              f"the held messages took {_seconds(recovered)} to reach the receiver")
    return row


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
