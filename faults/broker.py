"""RabbitMQ stopped and started again while events are published and delivered.

A publisher keeps publishing through the outage: each ``publish()`` either
returns (RabbitMQ confirmed the message) or raises a ``TransportError``. Every
confirmed event must arrive. The worker, left alone, must notice the lost
connection, reconnect with back-off, say so in its log, and go on.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from faults.figures import Row, tally
from faults.publishing import Publisher
from faults.receiver import Receiver
from faults.services import outage, wait_listening
from faults.stack import Stack

__all__ = ["reconnect_story", "run"]


def reconnect_story(log: str) -> str:
    """What a worker's log says about losing and regaining the broker, in one line.

    A worker logs one line when it loses the broker and one when it has it
    back, with the number of reconnect tries in between.
    """
    lost = re.findall(r"broker connection lost, reconnecting", log)
    restored = re.findall(r"broker connection restored.*?down_for=([\d.]+)", log)
    tries = sum(int(n) for n in re.findall(r"broker connection restored.*?reconnects=(\d+)",
                                            log))
    if not lost:
        return "the worker never lost its broker connection"
    return (f"worker lost its broker connection {len(lost)} time(s), {tries} reconnect tries, "
            f"restored after {restored[-1] if restored else '?'} s")


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """RabbitMQ down for a few seconds in the middle of a stream (``amqp`` only)."""
    row = Row("RabbitMQ restarted mid-stream", transport)
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            url = receiver.url("ok", "broker")
            stack.subscribe(url)
            worker = stack.worker(concurrency=4)
            publisher = Publisher(stack.app, "broker").start()
            try:
                receiver.wait_for(20, timeout=30)
                with outage("rabbitmq", 3 if short else 6, directory / "outage.log") as down:
                    wait_listening(5672, up=True, timeout=120)
                    down.up_at = time.monotonic()
                    before = receiver.delivered()
                # Keep publishing a while on the new connection, then stop.
                time.sleep(3 if short else 8)
            finally:
                publisher.stop()
            arrived = receiver.wait_for(len(publisher.accepted), timeout=90)
            after = receiver.delivered() - before
            recovered = worker.alive()
            worker.signal(signal.SIGTERM)
            worker.wait(timeout=30)
            log = worker.text()
        counted = tally(receiver.snapshot(), publisher.accepted, ["/ok/broker"])
    finally:
        receiver.close()
    row.add(counted)
    refused = len(publisher.refused)
    row.notes.append(
        f"RabbitMQ down {down.seconds:.1f} s; {refused} publishes refused with an error "
        f"(slowest publish call {publisher.slowest:.1f} s), {len(publisher.accepted)} confirmed"
    )
    if publisher.refused:
        row.notes.append(f"publisher was told: {publisher.refused[0][:160]}")
    row.notes.append(reconnect_story(log))
    row.check(all(r.startswith("TransportError") for r in publisher.refused),
              "a publish failed with something other than TransportError")
    row.check(recovered, "the worker died instead of reconnecting")
    row.check(after > 0, "nothing was delivered after the restart")
    row.check(arrived, "confirmed events still missing 90 s after the restart")
    row.check("reconnecting" in log and "restored" in log,
              "the worker log does not say it lost and regained the broker")
    return row
