"""6. Soak: 100,000 events through one worker; its RSS after warm-up and at the end.

The events are published (batched when the App can) from a thread while the
worker drains them; the worker's RSS is sampled every half second. "After
warm-up" is the RSS once the first 10% arrived; "end" is the RSS once all did
(or when the time cap ends the run). The delivery rate of the first and last
10% windows (from the receiver's per-event clock) shows any slowdown as the
store fills. Transport: RabbitMQ (``BENCH_SOAK_TRANSPORT=pg`` or ``sqlite`` for
the SQL queues).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from bench import harness as h
from bench import rigs

NAME = "soak"


def _window_rate(times: list[float], lo: int, hi: int) -> float:
    got = sorted(t for t in times[lo:hi] if t > 0)
    if len(got) < 2:
        return float("nan")
    return (len(got) - 1) / (got[-1] - got[0])


def run(ctx: h.Context, receiver: Any) -> None:
    n = ctx.n(100_000, 3_000)
    cap = float(os.environ.get("BENCH_SOAK_CAP", ctx.n(900, 60)))
    transport = os.environ.get("BENCH_SOAK_TRANSPORT", "amqp")
    contender = f"asyncevents {transport}, 1 worker"
    h.log(f"{NAME}: {n} events on {transport} (cap {cap:.0f} s)")
    with rigs.AsyncEventsRig(receiver, transport) as rig:
        pid = rig.pids[0]
        receiver.reset()
        start_rss = h.rss_mb(pid)
        t0 = time.monotonic()
        failed: list[BaseException] = []

        def publish() -> None:
            try:
                rig.publish(n)
            except BaseException as exc:
                failed.append(exc)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        warm_at = max(1, n // 10)
        warm_rss = peak = float("nan")
        deadline = t0 + cap
        samples = []
        while receiver.count < n and time.monotonic() < deadline and not failed:
            rig.alive()
            rss = h.rss_mb(pid)
            samples.append((time.monotonic() - t0, receiver.count, rss))
            peak = rss if peak != peak else max(peak, rss)
            if warm_rss != warm_rss and receiver.count >= warm_at:
                warm_rss = rss
            time.sleep(0.5)
        done = receiver.count
        end_rss = h.rss_mb(pid)
        elapsed = (receiver.last or time.monotonic()) - t0
        times = receiver.times(n)
        publisher.join(60)
    if failed:
        raise RuntimeError(f"publishing failed: {failed[0]}")
    note = None if done >= n else f"capped: {done} of {n} in {cap:.0f} s"
    if warm_rss != warm_rss:
        warm_rss = start_rss
        note = (note or "") + "; never reached the warm-up mark, RSS at start used"
    ctx.results.info["soak RSS samples (s, received, MB)"] = samples[:: max(1, len(samples) // 40)]
    ctx.results.add(NAME, contender, "events delivered", done, "events")
    ctx.results.add(NAME, contender, "events/s", done / elapsed if elapsed > 0 else 0, "ev/s",
                    note=note)
    ctx.results.add(NAME, contender, "RSS after warm-up", warm_rss, "MB", higher_is_better=False)
    ctx.results.add(NAME, contender, "RSS at end", end_rss, "MB", higher_is_better=False)
    ctx.results.add(NAME, contender, "RSS growth after warm-up", end_rss - warm_rss, "MB",
                    higher_is_better=False, note=note)
    ctx.results.add(NAME, contender, "RSS peak", peak, "MB", higher_is_better=False)
    tenth = max(2, n // 10)
    first = _window_rate(times, 0, tenth)
    last = _window_rate(times, n - tenth, n) if done >= n else float("nan")
    ctx.results.add(NAME, contender, "rate, first 10%", first, "ev/s")
    ctx.results.add(NAME, contender, "rate, last 10%", last, "ev/s")
