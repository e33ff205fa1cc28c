"""7. Scale-out on RabbitMQ: ``asyncevents worker --processes N`` (N = 1, 2, 4) draining one queue.

The queue is filled first (no worker running), then ONE worker command starts
(N = 1: a plain worker; above: the supervisor and its N children); the rate
runs from the first receipt to the last, so start-up is not counted, and the
CPU is summed over the supervisor and its children from the first receipt on.
On a 2-core machine that also hosts RabbitMQ, PostgreSQL and the receiver,
this shows the overhead of more processes, not scale; on a bigger machine the
same rows size the rate per process (bench/README.md, "Sizing").
"""

from __future__ import annotations

import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "scaleout"
PROCESSES = (1, 2, 4)


def label_for(processes: int) -> str:
    """The contender's name for ``--processes N``."""
    return f"asyncevents, {processes} worker process{'es' if processes > 1 else ''}"


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(10_000, 1_000)
    cap = ctx.n(90, 30)
    for rep in range(ctx.repeat):
        for processes in PROCESSES:
            h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, --processes {processes}, "
                  f"{n} events")
            rig = rigs.AsyncEventsRig(receiver, "amqp", processes=processes, start=False)
            with rig:
                rig.publish(n)  # nothing consumes yet
                receiver.reset()
                rig.start_worker()
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
            label = label_for(processes)
            ctx.results.add(NAME, label, "events/s (drain)", rate, "ev/s", note=note)
            ctx.results.add(NAME, label, "CPU per 1k events", cpu / max(1, got) * 1000,
                            "cpu-s", higher_is_better=False)
            rigs.settle()
