"""Drain N pre-published events with an in-process worker: events/s and CPU per event.

A quick check between full bench runs (not a headline figure):

    python -m bench.probe [--events 2000] [--transport amqp|pg|sqlite] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import time

from bench import harness as h
from bench import rigs
from bench.receiver import Receiver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--transport", default="amqp", choices=["amqp", "pg", "sqlite"])
    parser.add_argument("--concurrency", type=int, default=h.WORKER_CONCURRENCY)
    args = parser.parse_args()

    from asyncevents.core.log import configure_logging
    from asyncevents.core.worker.worker import WorkerLimits

    configure_logging("WARNING")  # as the bench's workers run
    with Receiver() as receiver, rigs.AsyncEventsRig(receiver, args.transport,
                                                       start=False) as rig:
        app = rig.app
        for start in range(0, args.events, 500):
            app.publish_many([(h.EVENT, h.payload(i))
                              for i in range(start, min(args.events, start + 500))])
        before = receiver.count
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = app.run_worker(WorkerLimits(concurrency=args.concurrency,
                                             max_idle_time=1.0))
        wall = time.perf_counter() - wall0 - 1.0  # minus the idle second at the end
        cpu = time.process_time() - cpu0
        got = receiver.count - before
        print(f"{args.transport} c={args.concurrency}: {got} delivered of {args.events}, "
              f"{got / wall:,.0f} ev/s, {cpu / max(1, got) * 1000:.2f} ms CPU per event "
              f"(worker: {report.handled} handled)")


if __name__ == "__main__":
    main()
