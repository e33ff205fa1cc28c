"""5. Fan-out: one event to 100 HTTP subscriptions (RabbitMQ, one worker).

Two figures: the time from publishing one event until all 100 copies
arrived (median over several single events, sent one after another), and the
delivery rate while a burst of events, each fanned out to the 100, drains.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "fanout"
SUBSCRIPTIONS = 100


def run(ctx: h.Context, receiver: Any) -> None:
    singles = ctx.n(5, 2)
    burst = ctx.n(50, 5)
    cap = ctx.n(90, 30)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}")
        with rigs.AsyncEventsRig(receiver, "amqp", subscriptions=SUBSCRIPTIONS) as rig:
            took = []
            for i in range(singles):
                receiver.reset()
                t0 = time.monotonic()
                rig.app.publish(h.EVENT, h.payload(-1 - i))
                if not receiver.wait_for(SUBSCRIPTIONS, cap):
                    took.append(float("inf"))
                    break
                took.append(receiver.last - t0)
                receiver.wait_quiet(0.2)
            ctx.results.add(NAME, f"asyncevents, 1 event x {SUBSCRIPTIONS} subs",
                            "all copies received after", statistics.median(took) * 1000, "ms",
                            higher_is_better=False)
            run_ = h.measure(receiver, rig.publish, burst, cap, cpu_pids=rig.pids,
                             expect=burst * SUBSCRIPTIONS, alive=rig.alive)
            note = None if run_.complete else (
                f"capped: {run_.received} of {burst * SUBSCRIPTIONS} in {run_.elapsed:.0f} s")
            ctx.results.add(NAME, f"asyncevents, {burst} events x {SUBSCRIPTIONS} subs",
                            "deliveries/s", run_.rate, "del/s", note=note)
            ctx.results.add(NAME, f"asyncevents, {burst} events x {SUBSCRIPTIONS} subs",
                            "consumer CPU per 1k deliveries",
                            run_.cpu / max(1, run_.received) * 1000, "cpu-s",
                            higher_is_better=False)
        rigs.settle()
