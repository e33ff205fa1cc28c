"""A fast HTTP/1.1 receiver in its own process, counting what it gets.

A raw asyncio ``Protocol`` (no framework): keep-alive, every request answered
``200`` with ``content-length: 0``. The counts live in shared memory so the
benchmark process reads them without a round trip:

- ``count``: requests received since the last :meth:`Receiver.reset`;
- ``first`` / ``last``: ``time.monotonic()`` of the first and last of them
  (``CLOCK_MONOTONIC`` is system-wide on Linux, so it compares with the
  publisher's clock);
- ``times[seq]``: when the body carries ``"seq":N`` and ``N`` fits the array,
  the receipt time of that sequence number (latency and per-window rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import time
from typing import Any

__all__ = ["Receiver"]

_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_SEQ = b'"seq":'


class _Shared:
    def __init__(self, capacity: int) -> None:
        self.count = mp.RawValue("q", 0)
        self.first = mp.RawValue("d", 0.0)
        self.last = mp.RawValue("d", 0.0)
        self.errors = mp.RawValue("q", 0)
        self.port = mp.RawValue("i", 0)
        self.capacity = capacity
        self.times = mp.RawArray("d", max(1, capacity))


class _Http(asyncio.Protocol):
    __slots__ = ("buf", "shared", "transport")

    def __init__(self, shared: _Shared) -> None:
        self.shared = shared
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        shared = self.shared
        replies = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17: stop if stop >= 0 else len(head)])
            elif b"transfer-encoding: chunked" in head:
                shared.errors.value += 1  # never sent by our clients
                self.transport.close()
                return
            total = end + 4 + length
            if len(buf) < total:
                break
            body = buf[end + 4: total]
            buf = buf[total:]
            now = time.monotonic()
            if shared.capacity:
                i = body.find(_SEQ)
                if i >= 0:
                    j = i + 6
                    n = len(body)
                    while j < n and body[j] == 32:
                        j += 1
                    k = j
                    while k < n and 48 <= body[k] <= 57:
                        k += 1
                    if k > j:
                        seq = int(body[j:k])
                        if 0 <= seq < shared.capacity:
                            shared.times[seq] = now
            if shared.count.value == 0:
                shared.first.value = now
            shared.last.value = now
            shared.count.value += 1
            replies += 1
        self.buf = buf
        if replies:
            self.transport.write(_RESPONSE * replies)


def _serve(shared: _Shared, ready: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: _Http(shared), "127.0.0.1", 0, backlog=1024,
                           reuse_address=True)
    )
    shared.port.value = server.sockets[0].getsockname()[1]
    ready.set()
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


class Receiver:
    """Start with :meth:`start` (or as a context manager); read the shared counters."""

    def __init__(self, capacity: int = 0) -> None:
        self.shared = _Shared(capacity)
        self._process: Any = None

    def start(self) -> Receiver:
        """Start the server process and wait until it listens."""
        ctx = mp.get_context("fork")
        ready = ctx.Event()
        self._process = ctx.Process(target=_serve, args=(self.shared, ready), daemon=True,
                                    name="bench-receiver")
        self._process.start()
        if not ready.wait(10):
            raise RuntimeError("the receiver did not start")
        return self

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.shared.port.value}/hook"

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.shared.port.value}/{path}"

    @property
    def count(self) -> int:
        return int(self.shared.count.value)

    @property
    def first(self) -> float:
        return float(self.shared.first.value)

    @property
    def last(self) -> float:
        return float(self.shared.last.value)

    @property
    def errors(self) -> int:
        return int(self.shared.errors.value)

    def reset(self) -> None:
        """Zero the counters (call it while nothing is arriving)."""
        self.shared.count.value = 0
        self.shared.first.value = 0.0
        self.shared.last.value = 0.0
        if self.shared.capacity:
            ctypes_zero(self.shared.times)

    def times(self, n: int) -> list[float]:
        """Receipt times of sequence numbers ``0..n-1`` (0.0: not received)."""
        return list(self.shared.times[:n])

    def wait_for(self, n: int, timeout: float, *, poll: float = 0.002) -> bool:
        """Wait until ``n`` requests arrived since the reset; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.shared.count.value < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True

    def wait_quiet(self, quiet: float = 0.3, timeout: float = 30.0) -> None:
        """Wait until nothing arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        seen = self.count
        calm_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.count
            if now != seen:
                seen, calm_since = now, time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            os.kill(self._process.pid, signal.SIGTERM)
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._process = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ctypes_zero(array: Any) -> None:
    """Zero a RawArray in place."""
    import ctypes

    ctypes.memset(ctypes.addressof(array), 0, ctypes.sizeof(array))
