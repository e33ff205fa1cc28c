"""Wildcards built to backtrack: a filter ``*a*a*a*a*a*b`` on a 3,000-character value.

``asyncevents serve --worker`` (the API and a worker in one process) has three
subscriptions: every ``fault.*`` event (``/ok/all``), the same with the filter
``customer.note:*a*a*a*a*a*b`` (``/ok/wild``), and the event-name pattern
``fault.*a*a*a*a*a*b`` (``/ok/names``). Among ordinary events go one whose
``customer.note`` is 3,000 times ``a`` and one whose name is ``fault.`` and 240 ``a``:
neither matches, and a backtracking matcher would spend hours finding that out,
with the whole process (API and ``/healthz`` included) stuck at full CPU.

Every event must reach ``/ok/all`` in time; ``/ok/wild`` and ``/ok/names`` get
exactly the events that match; ``/healthz`` keeps answering throughout (polled
from a thread: its slowest answer is a figure). The row also gives the time
the evil note took from publish to its delivery.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import TOKEN, Stack, WorkerProcess

__all__ = ["EVIL_NAME", "EVIL_NOTE", "FILTER", "PATTERN", "run"]

FILTER = "customer.note:*a*a*a*a*a*b"
PATTERN = "fault.*a*a*a*a*a*b"
EVIL_NOTE = "a" * 3000
EVIL_NAME = "fault." + "a" * 240
_ALL, _WILD, _NAMES = "/ok/all", "/ok/wild", "/ok/names"
#: Seconds every event has to arrive; a stuck matcher would take hours.
DEADLINE = 60.0
#: The slowest ``/healthz`` answer allowed while the evil events go through.
HEALTH_LIMIT = 2.0


@dataclass
class _Health:
    """``/healthz`` polled from a thread: how many answers, how slow, which failed."""

    url: str
    answers: int = 0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def poll(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as response:
                    response.read()
                self.answers += 1
            except Exception as exc:  # a timeout or a refused connection: the figure says
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - began)
            self._stop.wait(0.2)

    @contextmanager
    def running(self) -> Iterator[_Health]:
        thread = threading.Thread(target=self.poll, daemon=True, name="healthz")
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=35)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(stack: Stack, port: int) -> WorkerProcess:
    """``asyncevents serve --worker`` on ``port``, its log in the stack's directory."""
    log = stack.directory / f"serve-{len(stack.workers)}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncevents", "serve", "--port", str(port), "--worker",
             "--concurrency", "2"],
            env=stack.env(), cwd=stack.directory, stdout=out, stderr=subprocess.STDOUT)
    server = WorkerProcess(process, log)
    stack.workers.append(server)  # killed by Stack.close, whatever happens
    return server


def _wait_healthy(url: str, server: WorkerProcess, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.alive():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except Exception:
            time.sleep(0.3)
    return False


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Evil wildcard inputs among ordinary events, through ``serve --worker``."""
    row = Row("wildcard filter *a*a*a*a*a*b on 3,000 x 'a'", transport)
    events = 20 if short else 100
    receiver = Receiver()
    try:
        with Stack.open(transport, directory) as stack:
            base = f"http://127.0.0.1:{receiver.port}"
            stack.app.subscribe("fault.*", base + _ALL, token=TOKEN)
            stack.app.subscribe("fault.*", base + _WILD, token=TOKEN, filter=FILTER)
            stack.app.subscribe(PATTERN, base + _NAMES, token=TOKEN)
            port = _free_port()
            health_url = f"http://127.0.0.1:{port}/healthz"
            server = _serve(stack, port)
            started = _wait_healthy(health_url, server)
            wild_ids: list[str] = []
            name_ids: list[str] = []
            event_ids: list[str] = []
            with _Health(health_url).running() as health:
                evil_at = time.monotonic()
                evil = stack.app.publish("fault.wildcard", {"customer": {"note": EVIL_NOTE}})
                event_ids.append(evil)
                event_ids.append(stack.app.publish(EVIL_NAME, {"customer": {"note": "x"}}))
                for n in range(events):
                    note = "a" * 50 + "b" if n % 2 else "a" * 50
                    name = "fault.aaaaab" if n % 3 == 0 else "fault.wildcard"
                    event_id = stack.app.publish(name, {"n": n, "customer": {"note": note}})
                    event_ids.append(event_id)
                    if n % 2:
                        wild_ids.append(event_id)
                    if n % 3 == 0:
                        name_ids.append(event_id)
                deadline = evil_at + DEADLINE
                arrived = all(
                    receiver.wait_for(len(ids), timeout=max(0.0, deadline - time.monotonic()),
                                      path=path)
                    for path, ids in ((_ALL, event_ids), (_WILD, wild_ids), (_NAMES, name_ids)))
                receiver.wait_quiet(1.0, timeout=10)
            alive = server.alive()
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, event_ids, [_ALL]))
    row.add(tally(hits, wild_ids, [_WILD]))
    row.add(tally(hits, name_ids, [_NAMES]))
    stray = {(h.path, h.event_id) for h in hits if h.status == 200
             and ((h.path == _WILD and h.event_id not in wild_ids)
                  or (h.path == _NAMES and h.event_id not in name_ids))}
    evil_hit = min((h.at for h in hits if h.path == _ALL and h.event_id == evil),
                   default=None)
    took = f"{evil_hit - evil_at:.2f} s" if evil_hit is not None else "never"
    row.notes.append(
        f"the evil note went from publish to delivery in {took}; /healthz answered "
        f"{health.answers} times meanwhile, slowest {health.slowest:.2f} s, "
        f"{len(health.failures)} failures"
    )
    row.check(started, "serve --worker did not answer /healthz at start")
    row.check(arrived, f"not every event arrived (or was filtered) within {DEADLINE:g} s")
    row.check(not stray, f"{len(stray)} deliveries that the filter or pattern should drop")
    row.check(alive, "serve --worker died")
    row.check(not health.failures, "/healthz failed: " + "; ".join(health.failures[:2]))
    row.check(health.slowest <= HEALTH_LIMIT,
              f"/healthz took {health.slowest:.1f} s to answer (limit {HEALTH_LIMIT:g} s)")
    return row
