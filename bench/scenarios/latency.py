"""3. Latency: publish -> receipt at a steady rate, p50 / p95 / p99.

Each event is published on a fixed schedule (``publish()``, confirmed on
RabbitMQ); the clock starts just before the publish call and stops when the
receiver reads the request (both ``CLOCK_MONOTONIC``). Events still missing
when the wait ends count as infinitely late, so a system that cannot keep up
shows an unbounded p95/p99 instead of a flattering one.

Rows: asyncevents on RabbitMQ and on PostgreSQL at 200 events/s (one worker
process), asyncevents on RabbitMQ at 1,000 events/s as ONE ``asyncevents
worker --processes 2``, the bare kombu loop on RabbitMQ at 200 events/s for
scale, and asyncevents on RabbitMQ at 20 events/s, where it keeps up easily
(its latency floor).

The publisher is one thread. When a publish call takes longer than the
interval it falls behind schedule; it then sends the events already due in
one ``publish_many`` call (at most ``CATCH_UP`` events, when the App has it),
each stamped with the time of that call, so the offered rate holds. Each row
records the rate reached and the share of events sent in such catch-up
batches; a rate below 95% of the one asked for is noted on the row (and the
target says so instead of PASS/MISS).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "latency"
RATE = 200.0
HIGH_RATE = 1000.0
HIGH_PROCESSES = 2
#: At most this many due events go out in one catch-up publish (0.2 s at 1,000 ev/s).
CATCH_UP = 200
#: Below this share of the rate asked for, the row is not at that rate.
KEPT = 0.95
AMQP = "asyncevents amqp"
PG = "asyncevents sqla+postgresql"
HIGH = f"asyncevents amqp --processes {HIGH_PROCESSES} at {HIGH_RATE:,.0f} ev/s"


def paced(rig: Any, n: int, rate: float) -> tuple[list[float], int]:
    """Publish ``n`` events at ``rate``; their send times and how many went in catch-ups."""
    sent = [0.0] * n
    interval = 1.0 / rate
    start = time.monotonic() + 0.05
    batched = 0
    can_batch = hasattr(rig, "publish_some") and rig.batch_publish
    i = 0
    while i < n:
        now = time.monotonic()
        target = start + i * interval
        if target > now:
            time.sleep(target - now)
            now = time.monotonic()
        due = min(n, i + CATCH_UP, int((now - start) / interval) + 1) if can_batch else i + 1
        if due - i <= 1:
            sent[i] = now
            rig.publish_one(i)
            i += 1
            continue
        for k in range(i, due):
            sent[k] = now
        rig.publish_some(i, due)
        batched += due - i
        i = due
    return sent, batched


def one(ctx: h.Context, receiver: Any, rig: Any, contender: str, seconds: float,
        grace: float, rate: float = RATE) -> None:
    n = int(rate * seconds)
    with rig:
        receiver.reset()
        sent, batched = paced(rig, n, rate)
        achieved = (n - 1) / (sent[-1] - sent[0]) if n > 1 and sent[-1] > sent[0] else rate
        receiver.wait_for(n, grace)
        got = receiver.times(n)
        rig.alive()
    lat = [(g - s) * 1000 if g > 0 else math.inf for g, s in zip(got, sent, strict=True)]
    missing = sum(1 for v in lat if v == math.inf)
    notes = []
    if missing:
        notes.append(f"{missing} of {n} not received within {grace:.0f} s")
    if achieved < KEPT * rate:
        notes.append(f"the publisher reached only {achieved:,.0f} of {rate:,.0f} ev/s")
    note = "; ".join(notes) or None
    for p in (50, 95, 99):
        ctx.results.add(NAME, contender, f"p{p}", h.percentile(lat, p), "ms",
                        higher_is_better=False, note=note)
    ctx.results.add(NAME, contender, "publish rate achieved", achieved, "ev/s",
                    note=f"asked for {rate:,.0f} ev/s")
    ctx.results.add(NAME, contender, "sent in catch-up batches", 100.0 * batched / n, "%",
                    higher_is_better=False)
    rigs.settle()


def run(ctx: h.Context, receiver: Any) -> None:
    seconds = ctx.n(15, 4)
    grace = ctx.n(30, 10)
    for rep in range(ctx.repeat):
        h.log(f"{NAME}: repetition {rep + 1}/{ctx.repeat}, {RATE:.0f} ev/s for {seconds} s")
        one(ctx, receiver, AERig(receiver, "amqp"), AMQP, seconds, grace)
        one(ctx, receiver, AERig(receiver, "pg"), PG, seconds, grace)
        h.log(f"{NAME}: {HIGH_RATE:.0f} ev/s, --processes {HIGH_PROCESSES}")
        one(ctx, receiver, AERig(receiver, "amqp", processes=HIGH_PROCESSES), HIGH, seconds,
            grace, rate=HIGH_RATE)
        one(ctx, receiver, KombuRig(receiver, "amqp"), "kombu loop amqp", seconds, grace)
        # the floor, where the worker keeps up easily
        one(ctx, receiver, AERig(receiver, "amqp"), "asyncevents amqp at 20 ev/s", seconds,
            grace, rate=20.0)


class AERig(rigs.AsyncEventsRig):
    @property
    def batch_publish(self) -> bool:
        return self.batch_api

    def publish_one(self, seq: int) -> None:
        self.app.publish(h.EVENT, h.payload(seq))

    def publish_some(self, first: int, end: int) -> None:
        self.app.publish_many([(h.EVENT, h.payload(seq)) for seq in range(first, end)])


class KombuRig(rigs.KombuLoopRig):
    batch_publish = False

    def publish_one(self, seq: int) -> None:
        self.producer.publish(self.body(seq), delivery_mode=2)
