"""7. Scale-out on RabbitMQ: 1, 2 and 4 worker processes draining one queue.

The queue is filled first (no worker running), then the workers start; the
rate runs from the first receipt to the last, so start-up is not counted. On a
2-core machine that also hosts RabbitMQ, PostgreSQL and the receiver, this
shows the overhead of more processes, not scale.
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "scaleout"


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(10_000, 1_000)
    cap = ctx.n(90, 30)
    for rep in range(ctx.repeat):
        for workers in (1, 2, 4):
            h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {workers} worker(s), {n} events")
            rig = rigs.AsyncEventsRig(receiver, "amqp", workers=workers, start=False)
            with rig:
                rig.publish(n)  # nothing consumes yet
                receiver.reset()
                rig.add_workers(workers)
                deadline = time.monotonic() + cap + 15
                while receiver.count < 1 and time.monotonic() < deadline:
                    rig.alive()
                    time.sleep(0.005)
                cpu0 = h.cpu_seconds(rig.pids)  # start-up (imports) not counted
                while receiver.count < n and time.monotonic() < deadline:
                    rig.alive()
                    time.sleep(0.01)
                got = receiver.count
                first, last = receiver.first, receiver.last
                cpu = h.cpu_seconds(rig.pids) - cpu0
            rate = (got - 1) / (last - first) if got > 1 and last > first else float("nan")
            note = None if got >= n else f"capped: {got} of {n}"
            label = f"asyncevents, {workers} worker process{'es' if workers > 1 else ''}"
            ctx.results.add(NAME, label, "events/s (drain)", rate, "ev/s", note=note)
            ctx.results.add(NAME, label, "CPU per 1k events", cpu / max(1, got) * 1000,
                            "cpu-s", higher_is_better=False)
            rigs.settle()
