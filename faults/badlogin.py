"""A worker started with a wrong RabbitMQ password.

Waiting cannot fix a refused login, so the worker must not wait: it exits
non-zero within :data:`LIMIT` seconds with exactly one line on stderr, which
says why and does not show the password. Events published before it (with
the right password) are untouched: a worker with the right settings then
delivers every one.
"""

from __future__ import annotations

import time
from pathlib import Path

from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["LIMIT", "PASSWORD", "run"]

#: Seconds the worker may take to give up.
LIMIT = 10.0
#: The wrong password (it must appear nowhere in the worker's output).
PASSWORD = "Wr0ng-Fault-Pa55"
_PATH = "/ok/badlogin"


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Start a worker with a wrong broker password (``amqp`` only)."""
    row = Row("wrong broker password", transport)
    events = 10 if short else 30
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            right = stack.settings.transport_url
            if "guest:guest@" not in right:
                raise ValueError(f"expected guest:guest in the broker URL, not {right!r}")
            wrong = right.replace("guest:guest@", f"guest:{PASSWORD}@")
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{_PATH}")
            event_ids = [stack.app.publish("fault.badlogin", {"n": n}) for n in range(events)]
            started = time.monotonic()
            bad = stack.worker(env={"ASYNCEVENTS_TRANSPORT_URL": wrong}, stderr=True,
                               name="wrong-password")
            code = bad.wait(timeout=60)
            took = time.monotonic() - started
            if code is None:
                bad.kill()
            stderr, stdout = bad.stderr(), bad.text()
            drain = stack.drain(idle=3.0, time_limit=120)
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, event_ids, [_PATH]))
    lines = stderr.strip().splitlines()
    row.notes.append(
        f"the worker exited with {code} after {took:.1f} s (limit {LIMIT:g} s); stderr: "
        + (repr(lines[0][:300]) if len(lines) == 1 else f"{len(lines)} lines"))
    row.check(code is not None and code != 0,
              "the worker did not exit" if code is None else "the worker exited with 0")
    row.check(took <= LIMIT, f"the worker took {took:.1f} s to give up")
    row.check(len(lines) == 1, f"{len(lines)} lines on stderr, not one: {stderr[:400]!r}")
    row.check(bool(lines) and lines[0].startswith("error:"),
              "stderr does not start with 'error:'")
    row.check(bool(lines) and "ACCESS_REFUSED" in lines[0],
              "stderr does not say the login was refused")
    row.check(PASSWORD not in stderr + stdout, "the worker printed the password")
    row.check(drain.wait(timeout=0) == 0, "the worker with the right password failed")
    return row
