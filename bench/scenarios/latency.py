"""3. Latency: publish -> receipt at a steady 200 events/s, p50 / p95 / p99.

Each event is published alone (``publish()``, confirmed on RabbitMQ) on a
fixed schedule; the clock starts just before the publish call and stops when
the receiver reads the request (both ``CLOCK_MONOTONIC``). Events still
missing when the wait ends count as infinitely late, so a system that cannot
keep up shows an unbounded p95/p99 instead of a flattering one. The bare
kombu loop on RabbitMQ runs alongside for scale, and asyncevents on RabbitMQ
once more at 20 events/s, where it keeps up easily (its latency floor).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "latency"
RATE = 200.0


def paced(rig: Any, n: int, rate: float) -> list[float]:
    sent = [0.0] * n
    interval = 1.0 / rate
    start = time.monotonic() + 0.05
    for i in range(n):
        target = start + i * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.monotonic()
        rig.publish_one(i)
    return sent


def one(ctx: h.Context, receiver: Any, rig: Any, contender: str, seconds: float,
        grace: float, rate: float = RATE) -> None:
    n = int(rate * seconds)
    with rig:
        receiver.reset()
        sent = paced(rig, n, rate)
        achieved = n / (sent[-1] - sent[0]) if n > 1 else float("nan")
        receiver.wait_for(n, grace)
        got = receiver.times(n)
    lat = [(g - s) * 1000 if g > 0 else math.inf for g, s in zip(got, sent, strict=True)]
    missing = sum(1 for v in lat if v == math.inf)
    note = f"{missing} of {n} not received within {grace:.0f} s" if missing else None
    for p in (50, 95, 99):
        ctx.results.add(NAME, contender, f"p{p}", h.percentile(lat, p), "ms",
                        higher_is_better=False, note=note)
    ctx.results.add(NAME, contender, "publish rate achieved", achieved, "ev/s")
    rigs.settle()


def run(ctx: h.Context, receiver: Any) -> None:
    seconds = ctx.n(15, 4)
    grace = ctx.n(30, 10)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {RATE:.0f} ev/s for {seconds} s")
        one(ctx, receiver, AERig(receiver, "amqp"), "asyncevents amqp", seconds, grace)
        one(ctx, receiver, AERig(receiver, "pg"), "asyncevents sqla+postgresql", seconds, grace)
        one(ctx, receiver, KombuRig(receiver, "amqp"), "kombu loop amqp", seconds, grace)
        # the floor, where the worker keeps up easily
        one(ctx, receiver, AERig(receiver, "amqp"), "asyncevents amqp at 20 ev/s", seconds,
            grace, rate=20.0)


class AERig(rigs.AsyncEventsRig):
    def publish_one(self, seq: int) -> None:
        self.app.publish(h.EVENT, h.payload(seq))


class KombuRig(rigs.KombuLoopRig):
    def publish_one(self, seq: int) -> None:
        self.producer.publish(self.body(seq), delivery_mode=2)
