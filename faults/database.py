"""PostgreSQL restarted while workers run.

The store is on PostgreSQL (with the queue too, on ``sqla+postgresql``). Two
workers deliver to a healthy receiver and to a flaky one (500 on every other first
try, so retries are scheduled through the outage). Afterwards every request
the receivers got must have its attempt row, every event must have arrived,
and the workers must still run, having said in their logs what happened.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from faults.broker import reconnect_story
from faults.figures import Row, store_check, tally
from faults.publishing import Publisher
from faults.receiver import Receiver
from faults.services import outage, wait_listening
from faults.stack import Stack

__all__ = ["run"]

_PATHS = ["/ok/pg", "/flaky/pg"]


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """PostgreSQL down a few seconds while two workers deliver."""
    row = Row("PostgreSQL restarted mid-stream",
              transport if transport == "sqla+postgresql" else f"{transport}, store on pg")
    receiver = Receiver()
    try:
        # Fixed half-second retries: the flaky receiver's retries fall inside the outage.
        with Stack.open(transport, directory, pg_store=True, backoff="fixed",
                        backoff_base=0.5) as stack:
            for path in _PATHS:
                stack.subscribe(f"http://127.0.0.1:{receiver.port}{path}")
            workers = [stack.worker(concurrency=4), stack.worker(concurrency=4)]
            publisher = Publisher(stack.app, "pg", pause=0.05).start()
            try:
                receiver.wait_for(20, timeout=30)
                with outage("postgresql", 2 if short else 5, directory / "outage.log") as down:
                    wait_listening(5432, up=True, timeout=120)
                    down.up_at = time.monotonic()
                    before = receiver.delivered()
                time.sleep(3 if short else 8)
            finally:
                publisher.stop()
            expected = 2 * len(publisher.accepted)
            arrived = receiver.wait_for(expected, timeout=90)
            receiver.wait_quiet(2.0, timeout=30)
            after = receiver.delivered() - before
            recovered = all(w.alive() for w in workers)
            for worker in workers:
                worker.signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            hits = receiver.snapshot()
            checked = store_check(stack.app.store, hits, _PATHS)
            log = stack.logs()
            dumps = len(stack.emergency_dumps())
        counted = tally(hits, publisher.accepted, _PATHS)
    finally:
        receiver.close()
    row.add(counted)
    row.notes.append(
        f"PostgreSQL down {down.seconds:.1f} s; {len(publisher.refused)} publishes refused "
        f"with an error; {checked.requests} requests received, {checked.attempts} attempts "
        "recorded"
    )
    row.notes.append(
        f"workers logged {log.count('handler failed')} handler failures (message returned to "
        f"the queue) and {log.count('broker connection lost')} lost queue connections; "
        + reconnect_story(log)
    )
    if dumps:
        row.notes.append(
            f"kombu wrote {dumps} emergency dumps of unacked messages to /tmp (removed): "
            "SqlChannel._restore raised while the database was down; the rows came back "
            "when their lease ran out (fix reported for core/transport/sql/channel.py)")
    row.check(all(r.startswith("TransportError") for r in publisher.refused),
              "a publish failed with something other than TransportError")
    row.check(recovered, "a worker died instead of recovering")
    row.check(after > 0, "nothing was delivered after the restart")
    row.check(arrived, "events still missing 90 s after the restart")
    row.check(checked.unrecorded == 0,
              f"{checked.unrecorded} deliveries got requests that have no attempt row")
    row.check(checked.not_final == 0,
              f"{checked.not_final} deliveries arrived but are not 'delivered' in the store")
    row.check("database error" in log or "connection lost" in log,
              "the worker logs do not mention the outage")
    return row
