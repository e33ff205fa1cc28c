"""Poison messages in the queues and hostile receivers; the worker must shrug them off.

Beside a stream of good events the queues get messages no publisher of ours
would send: bytes that are not JSON, a JSON list, bodies with missing or
mistyped fields, a delivery that does not exist. Two subscriptions answer
with a 256 KB response header and with a 100 MB body. The worker must drop
each poison message once with an error in its log (not loop on it, not
die), record a failed attempt for the oversized headers, read only the
excerpt of the huge body, and deliver every good event.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

from kombu import Producer

from asyncevents.core.messages import as_route
from asyncevents.core.transport.kombubase import KombuTransport
from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import Stack

__all__ = ["POISON", "inject", "run"]

#: (route, raw body) pairs; the body goes out as JSON-labelled bytes, unchecked.
POISON: tuple[tuple[str, bytes], ...] = (
    ("trigger", b"{this is not json"),
    ("trigger", b"\xff\xfe not even utf-8"),
    ("trigger", b"[1, 2, 3]"),
    ("trigger", b'{"event_id": "x"}'),
    ("trigger", json.dumps({"event_id": "x", "name": "fault.poison", "data": {},
                            "published_at": "yesterday", "deaths": 0}).encode()),
    ("trigger", json.dumps({"event_id": "x", "name": 42, "data": [], "published_at": 1,
                            "deaths": "many"}).encode()),
    ("deliver", b'{"delivery_id": "no-such-delivery", "deaths": 0, "replay": false}'),
    ("deliver", b'{"delivery_id": null}'),
)

_GOOD = "/ok/good"
_HEADERS = "/bigheaders/h"
_BODY = "/bigbody/b"


def inject(stack: Stack, poison: tuple[tuple[str, bytes], ...] = POISON) -> None:
    """Put raw ``poison`` bodies straight into the stack's queues."""
    broker = stack.app.transport
    assert isinstance(broker, KombuTransport)
    conn = broker.connect()
    try:
        producer = Producer(conn.channel())
        for route, body in poison:
            queue = broker.topology.queue(as_route(route))
            producer.publish(body, exchange=broker.topology.exchange, routing_key=route,
                             content_type="application/json", content_encoding="binary",
                             declare=[queue], delivery_mode=2)
    finally:
        conn.release()


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Poison messages and hostile receivers beside good events."""
    row = Row("poison messages, 256 KB headers, 100 MB body", transport)
    events = 20 if short else 60
    receiver = Receiver()
    try:
        # Three quick attempts, so the 256 KB-header copies end dead within the run.
        with Stack.open(transport, directory, max_deaths=2, backoff="fixed", backoff_base=0.5,
                        http_timeout=10.0) as stack:
            for path in (_GOOD, _HEADERS, _BODY):
                stack.subscribe(f"http://127.0.0.1:{receiver.port}{path}")
            worker = stack.worker(concurrency=2)
            inject(stack)
            event_ids = []
            for n in range(events):
                event_ids.append(stack.app.publish("fault.hostile", {"n": n}))
                if n == events // 2:
                    inject(stack)
            arrived = receiver.wait_for(events, timeout=120, path=_GOOD)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _settled(stack, 3 * events):
                time.sleep(0.5)
            peak = _peak_rss_mb(worker.pid)
            alive = worker.alive()
            worker.signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
            log = worker.text()
            outcomes = _outcomes(stack, 3 * events)
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, event_ids, [_GOOD]))
    sent = receiver.body_bytes_per_request
    most = max(sent, default=0)
    dropped = log.count("malformed message dropped") + log.count("undecodable message")
    failed = log.count("handler failed")
    row.notes.append(
        f"{2 * len(POISON)} poison messages: {dropped} dropped with an error, "
        f"{failed} handler failures logged; worker peak RSS {peak:.0f} MB; "
        f"100 MB bodies: at most {most / 1e6:.1f} MB of one left the receiver (socket "
        f"buffers), {receiver.body_bytes_sent / 1e6:.0f} MB for all {len(sent)}; "
        f"outcomes {outcomes}"
    )
    row.check(alive and code == 0, f"the worker died or exited with {code}")
    row.check(arrived, "good events went missing")
    row.check(dropped == 2 * len(POISON),
              f"{dropped} of {2 * len(POISON)} poison messages dropped with a log line")
    row.check(failed <= 2 * len(POISON), "a poison message kept coming back")
    row.check(most < 16e6, "a 100 MB body was read far past the excerpt")
    row.check(peak < 300, f"the worker's memory peaked at {peak:.0f} MB")
    # Dead after its attempts, or (once ten failures in a row opened the
    # subscription's circuit, at its defaults) waiting behind the open circuit.
    headers = outcomes.get(_HEADERS, {})
    row.check(headers.get("dead", 0) + headers.get("waiting behind an open circuit", 0)
              == events, "not every huge-header delivery ended dead or waits behind its "
                         "open circuit, with its failures recorded")
    row.check(outcomes.get(_BODY, {}).get("delivered", 0) == events,
              "not every huge-body delivery was delivered")
    return row


def _settled(stack: Stack, count: int) -> bool:
    deliveries = stack.app.store.recent_deliveries(limit=count * 2)
    circuits = stack.app.store.circuit_health({d.subscription_id for d in deliveries})
    return sum(d.status in ("delivered", "dead")
               or circuits[d.subscription_id].state != "closed"
               for d in deliveries) >= count


def _outcomes(stack: Stack, count: int) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    deliveries = stack.app.store.recent_deliveries(limit=count * 2)
    circuits = stack.app.store.circuit_health({d.subscription_id for d in deliveries})
    for delivery in deliveries:
        path = "/" + delivery.recipient.split("/", 3)[3]
        bucket = found.setdefault(path, {})
        status: str = delivery.status
        if status not in ("delivered", "dead") and \
                circuits[delivery.subscription_id].state != "closed":
            status = "waiting behind an open circuit"
        bucket[status] = bucket.get(status, 0) + 1
    return found
