"""7. Scale-out on RabbitMQ: ``asyncevents worker --processes N`` (N = 1, 2, 4) draining one queue.

The queue is filled first (no worker running), then ONE worker command starts
(N = 1: a plain worker; above: the supervisor and its N children). The drain
is timed from the moment all N consume (RabbitMQ's consumer count), over the
events received from then on, so start-up is not counted; the CPU is summed
over the supervisor and its children over the same span.
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
                cpu_start = h.cpu_seconds(rig.pids)  # the bench's own processes: none yet
                rig.start_worker()
                deadline = time.monotonic() + cap + 15
                # The children import and connect one by one: the drain is timed from
                # when all N consume (RabbitMQ's consumer counts), start-up not counted.
                queues = [f"{rig.prefix}.trigger", f"{rig.prefix}.deliver"]
                while receiver.count < n and time.monotonic() < deadline:
                    rig.alive()
                    if max(h.rabbit_consumers(queues).values(), default=0) >= processes:
                        break
                    time.sleep(0.1)
                all_in = time.monotonic()
                cpu0 = h.cpu_seconds(rig.pids)
                while receiver.count < n and time.monotonic() < deadline:
                    rig.alive()
                    time.sleep(0.01)
                got = receiver.count
                cpu_end = h.cpu_seconds(rig.pids)
                after = sorted(t for t in receiver.times(n) if t >= all_in)
            notes = [] if got >= n else [f"capped: {got} of {n}"]
            cpu = cpu_end - cpu0
            if len(after) < max(2, n // 10):  # mostly drained before the last one consumed
                notes.append(f"only {len(after)} events left once all {processes} consumed: "
                             "timed from the first receipt, CPU with start-up")
                after = sorted(t for t in receiver.times(n) if t > 0)
                cpu = cpu_end - cpu_start
            rate = ((len(after) - 1) / (after[-1] - after[0])
                    if len(after) > 1 and after[-1] > after[0] else float("nan"))
            timed = len(after)
            note = "; ".join(notes) or None
            label = label_for(processes)
            ctx.results.add(NAME, label, "events/s (drain)", rate, "ev/s", note=note)
            ctx.results.add(NAME, label, "CPU per 1k events", cpu / max(1, timed) * 1000,
                            "cpu-s", higher_is_better=False)
            rigs.settle()
