"""A worker started with a wrong ``ASYNCEVENTS_SECRET_KEY``.

The store keeps the fingerprint of the key its secrets are encrypted with, so
a wrong key is found at start, not at every message: the worker exits
non-zero within :data:`LIMIT` seconds with exactly one line on stderr, which
does not show the key, and takes no message (the receiver gets nothing, the
store records no attempt). The worker with the right key then delivers every
event; the row notes the time to recovery (that worker's start to the last
event delivered).
"""

from __future__ import annotations

import time
from pathlib import Path

from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["LIMIT", "WRONG_KEY", "run"]

#: Seconds the worker may take to give up.
LIMIT = 10.0
#: The wrong key (it must appear nowhere in the worker's output).
WRONG_KEY = "Wr0ng-Fault-Secret-Key"
_PATH = "/ok/wrongkey"


def _touched(stack: Stack) -> int:
    """Deliveries and attempts the store holds (the wrong worker may have made none)."""
    from asyncevents.core.search import iter_deliveries

    return sum(1 + d.attempts for d in iter_deliveries(stack.app.store, "*"))


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Start a worker with a wrong secret key, then one with the right key."""
    row = Row("wrong secret key", transport)
    events = 10 if short else 30
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{_PATH}")
            event_ids = [stack.app.publish("fault.wrongkey", {"n": n}) for n in range(events)]
            started = time.monotonic()
            bad = stack.worker(env={"ASYNCEVENTS_SECRET_KEY": WRONG_KEY}, stderr=True,
                               name="wrong-key")
            code = bad.wait(timeout=60)
            took = time.monotonic() - started
            if code is None:
                bad.kill()
            stderr, stdout = bad.stderr(), bad.text()
            untouched = not receiver.snapshot() and _touched(stack) == 0
            began = time.monotonic()
            drain = stack.drain(idle=3.0, time_limit=120)
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, event_ids, [_PATH]))
    delivered_at = [h.at for h in hits if h.status == 200]
    recovery = max(delivered_at) - began if delivered_at else float("nan")
    lines = stderr.strip().splitlines()
    row.notes.append(
        f"the worker exited with {code} after {took:.1f} s (limit {LIMIT:g} s); stderr: "
        + (repr(lines[0][:300]) if len(lines) == 1 else f"{len(lines)} lines")
        + f"; the right key delivered all within {recovery:.1f} s of its start")
    row.check(code is not None and code != 0,
              "the worker did not exit" if code is None else "the worker exited with 0")
    row.check(took <= LIMIT, f"the worker took {took:.1f} s to give up")
    row.check(len(lines) == 1, f"{len(lines)} lines on stderr, not one: {stderr[:400]!r}")
    row.check(bool(lines) and lines[0].startswith("error:"),
              "stderr does not start with 'error:'")
    row.check(bool(lines) and "is not the key" in lines[0],
              "stderr does not say the key is wrong")
    row.check(WRONG_KEY not in stderr + stdout, "the worker printed the key")
    row.check(untouched, "the worker with the wrong key touched deliveries")
    row.check(drain.wait(timeout=0) == 0, "the worker with the right key failed")
    return row
