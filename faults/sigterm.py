"""SIGTERM while deliveries are in flight.

The receiver takes a second per request, so when the signal comes the
worker holds several requests open. It must let them finish, record them and
ack them, give back what it had only prefetched, and exit 0 soon after. At
that moment every request the receiver got must have its attempt row (none
half-recorded); a second worker then delivers the rest (none dropped).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from faults.figures import Row, store_check, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["run"]

_PATH = "/slow/term"


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """SIGTERM a worker with requests in flight; count what the next one finds."""
    row = Row("SIGTERM during delivery", transport)
    events = 16 if short else 40
    receiver = Receiver(slow_seconds=1.0)
    try:
        with Stack.open(transport, directory, lease_seconds=30.0) as stack:
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{_PATH}")
            event_ids = [stack.app.publish("fault.sigterm", {"n": n}) for n in range(events)]
            worker = stack.worker(concurrency=4)
            receiver.wait_for(events // 4, timeout=60)
            deadline = time.monotonic() + 10
            while receiver.in_flight < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # well inside the 1 s requests
            in_flight = receiver.in_flight
            signalled = time.monotonic()
            worker.signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
            took = time.monotonic() - signalled
            log = worker.text()
            at_exit = store_check(stack.app.store, receiver.snapshot(), [_PATH])
            # Short leases would hide a message the worker failed to give back.
            drain = stack.drain(idle=3.0, time_limit=120)
            hits = receiver.snapshot()
            final = store_check(stack.app.store, hits, [_PATH])
        counted = tally(hits, event_ids, [_PATH])
    finally:
        receiver.close()
    row.add(counted)
    row.notes.append(
        f"{in_flight} requests in flight at SIGTERM; the worker exited with {code} "
        f"{took:.1f} s later; {at_exit.requests} requests received by then, "
        f"{at_exit.attempts} attempts recorded"
    )
    row.check(code == 0, f"the worker exited with {code}, not 0")
    row.check(in_flight > 0, "no request was in flight at SIGTERM: the run proves nothing")
    row.check(took < 10, f"the worker took {took:.1f} s to stop")
    row.check("signal SIGTERM" in log, "the worker log does not say why it stopped")
    row.check(at_exit.unrecorded == 0,
              f"{at_exit.unrecorded} requests had no attempt row when the worker exited")
    row.check(final.unrecorded == 0 and final.not_final == 0,
              "the store and the receiver disagree after the drain")
    row.check(counted.duplicated == 0, "a graceful stop caused duplicates")
    row.check(drain.wait(timeout=0) == 0, "the draining worker failed")
    return row
