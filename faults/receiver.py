"""A webhook receiver for fault runs: one threaded HTTP server, one behaviour per path.

Modes (the first path segment picks one):

- ``ok``: answers 200 at once.
- ``slow``: answers 200 after ``slow_seconds`` (2 s unless told).
- ``hang``: holds the request ``hang_seconds``, longer than any sink timeout.
- ``reset``: reads the request, then closes the connection with a TCP RST.
- ``flaky``: answers 500 to the first try of every other new ``webhook-id``
  (then 200): retries all the way, without the steady failures that would open
  the subscription's circuit breaker (a burst of first tries that all failed
  would, at its default settings, and its deliveries would then wait).
- ``bigheaders``: 200 with a response header of ``big_header_bytes``.
- ``bigbody``: 200 with a ``big_body_bytes`` body, streamed until the client hangs up.
- ``echo``: 500 with everything it got (headers and body) as the response body.

Every request is recorded as a :class:`Hit`; a hit whose status is 200 is a
delivery that arrived.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MODES", "Hit", "Receiver"]

MODES = ("ok", "slow", "hang", "reset", "flaky", "bigheaders", "bigbody", "echo")
_CHUNK = b"x" * 65536


@dataclass(frozen=True)
class Hit:
    """One request the receiver got, and what it answered (0: no answer)."""

    mode: str
    path: str
    webhook_id: str
    event_id: str
    status: int
    at: float
    """``time.monotonic()`` when the answer was decided."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts, kills) are part of the plan: stay quiet."""


class Receiver:
    """A local HTTP server that records every webhook it gets."""

    def __init__(self, *, slow_seconds: float = 2.0, hang_seconds: float = 30.0,
                 big_header_bytes: int = 256 * 1024,
                 big_body_bytes: int = 100 * 1024 * 1024) -> None:
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        self.big_header_bytes = big_header_bytes
        self.big_body_bytes = big_body_bytes
        self.hits: list[Hit] = []
        self.body_bytes_sent = 0
        self.body_bytes_per_request: list[int] = []
        self.in_flight = 0
        """Requests being handled right now."""
        self._tries: Counter[str] = Counter()
        self._new_ids = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="fault-receiver")
        self._thread.start()

    @property
    def port(self) -> int:
        """The port it listens on (127.0.0.1)."""
        return int(self.server.server_address[1])

    def url(self, mode: str, name: str = "hook") -> str:
        """The URL of a receiver path that behaves as ``mode``."""
        if mode not in MODES:
            raise ValueError(f"unknown receiver mode {mode!r}")
        return f"http://127.0.0.1:{self.port}/{mode}/{name}"

    def record(self, hit: Hit) -> None:
        """Keep one hit."""
        with self._lock:
            self.hits.append(hit)

    def first_try(self, webhook_id: str) -> bool:
        """True the first time ``webhook_id`` is seen, for every other new id (``flaky``)."""
        with self._lock:
            self._tries[webhook_id] += 1
            if self._tries[webhook_id] != 1:
                return False
            self._new_ids += 1
            return self._new_ids % 2 == 1

    def snapshot(self) -> list[Hit]:
        """A copy of the hits so far."""
        with self._lock:
            return list(self.hits)

    def delivered(self, path: str | None = None) -> int:
        """Distinct webhook-ids answered 200 (on ``path`` if given)."""
        return len({h.webhook_id for h in self.snapshot()
                    if h.status == 200 and (path is None or h.path == path)})

    def wait_for(self, count: int, timeout: float, path: str | None = None) -> bool:
        """Wait until ``count`` distinct deliveries arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.delivered(path) >= count:
                return True
            time.sleep(0.05)
        return self.delivered(path) >= count

    def wait_quiet(self, seconds: float, timeout: float) -> None:
        """Wait until no request arrived for ``seconds`` (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.snapshot()
            if not hits or time.monotonic() - hits[-1].at >= seconds:
                return
            time.sleep(0.1)

    def close(self) -> None:
        """Stop serving; hanging handlers give up at once."""
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    def closing(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closing.is_set()


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            with receiver._lock:
                receiver.in_flight += 1
            try:
                self._handle()
            finally:
                with receiver._lock:
                    receiver.in_flight -= 1

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
            mode = self.path.strip("/").split("/", 1)[0]
            webhook_id = self.headers.get("webhook-id", "")
            try:
                event_id = str(json.loads(body).get("id", ""))
            except (ValueError, AttributeError):
                event_id = ""

            def hit(status: int) -> None:
                receiver.record(Hit(mode, self.path, webhook_id, event_id, status,
                                    time.monotonic()))

            if mode == "slow":
                time.sleep(receiver.slow_seconds)
            elif mode == "hang":
                hit(0)
                _sleep_unless(receiver, receiver.hang_seconds)
                self.close_connection = True
                return
            elif mode == "reset":
                hit(0)
                self._reset()
                return
            elif mode == "flaky" and receiver.first_try(webhook_id):
                hit(500)
                self._answer(500, b"try again")
                return
            elif mode == "bigheaders":
                hit(200)
                self._answer(200, b"ok", extra={"x-padding": "p" * receiver.big_header_bytes})
                return
            elif mode == "bigbody":
                hit(200)
                self._stream_big_body()
                return
            elif mode == "echo":
                hit(500)
                self._answer(500, str(self.headers).encode() + body)
                return
            hit(200)
            self._answer(200, b"ok")

        def _answer(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _stream_big_body(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(receiver.big_body_bytes))
            self.end_headers()
            left = sent = receiver.big_body_bytes
            try:
                while left > 0 and not receiver.closing():
                    chunk = _CHUNK[:left]
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except OSError:
                pass  # the client read its excerpt and hung up: what we want
            sent -= left
            with receiver._lock:
                receiver.body_bytes_sent += sent
                receiver.body_bytes_per_request.append(sent)
            self.close_connection = True

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _sleep_unless(receiver: Receiver, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not receiver.closing():
        time.sleep(0.1)
