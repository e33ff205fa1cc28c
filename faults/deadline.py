"""``Expect: 100-continue`` refused, and receivers that never answer: every attempt ends
at its deadline, nothing is lost, and the time to recovery is measured.

A subscription asking for ``Expect: 100-continue`` (which made the worker's
HTTP client wait for ever for an interim answer) must be refused when it is
created. Then two receivers go quiet: one accepts the connection, reads the
request and sends nothing; the other answers a status line and then one
header byte a second, for ever (which no read timeout catches). The worker
runs with ``ASYNCEVENTS_ATTEMPT_DEADLINE`` far below its HTTP read timeout,
so only the deadline can end these attempts: each must end within it (plus
a margin), recorded as a retryable failure. Then the receivers recover and
answer 200; every event must arrive (the circuit breaker, at its defaults,
holds deliveries back meanwhile rather than spending their attempts), and
the row reports how long after the recovery the last one arrived.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

from asyncevents.errors import ConfigError
from faults.figures import Row, tally
from faults.receiver import Hit
from faults.stack import TOKEN, Stack

__all__ = ["QuietReceiver", "run"]

_SILENT = "/silent/hook"
_TRICKLE = "/trickle/hook"
_DEADLINE = 2.0
_MARGIN = 1.5  # scheduling, the store's write: an attempt's duration is measured around it


class QuietReceiver:
    """A raw HTTP/1.1 receiver: quiet (per path: ``silent`` or ``trickle``) until
    :meth:`recover`, then 200 to every request, each one recorded as a :class:`Hit`."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.recovered_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True, name="quiet-receiver").start()

    def url(self, path: str) -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def recover(self) -> None:
        """From now on, answer 200."""
        with self._lock:
            self.recovered_at = time.monotonic()

    def snapshot(self) -> list[Hit]:
        """A copy of the hits so far."""
        with self._lock:
            return list(self.hits)

    def close(self) -> None:
        """Stop serving; quiet connections are dropped."""
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    request, buffer = self._read_request(conn, buffer)
                except OSError:
                    return
                if request is None:
                    return
                path, headers, body = request
                with self._lock:
                    answering = self.recovered_at is not None
                if not answering:
                    self._stay_quiet(conn, path)
                    return
                try:
                    event_id = str(json.loads(body).get("id", ""))
                except (ValueError, AttributeError):
                    event_id = ""
                with self._lock:
                    self.hits.append(Hit(path.strip("/").split("/")[0], path,
                                         headers.get("webhook-id", ""), event_id, 200,
                                         time.monotonic()))
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                except OSError:
                    return

    def _read_request(self, conn: socket.socket, buffer: bytes
                      ) -> tuple[tuple[str, dict[str, str], bytes] | None, bytes]:
        while b"\r\n\r\n" not in buffer:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if self._stop.is_set():
                    return None, b""
                continue
            if not chunk:
                return None, b""
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return None, b""
            rest += chunk
        return (path, headers, rest[:length]), rest[length:]

    def _stay_quiet(self, conn: socket.socket, path: str) -> None:
        """Hold the connection until the client gives up (or the receiver stops)."""
        trickle = path.startswith("/trickle")
        started = False
        while not self._stop.is_set():
            try:
                if trickle:
                    conn.sendall(b"x" if started else b"HTTP/1.1 200 OK\r\nx-slow: ")
                    started = True
                if not trickle and conn.recv(65536) == b"":
                    return  # the client hung up
            except TimeoutError:
                continue
            except OSError:
                return
            if trickle:
                self._stop.wait(1.0)


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """The Expect refusal, the deadline of each quiet attempt, and the recovery."""
    row = Row("Expect: 100-continue; silent / trickling receivers", transport)
    events = 6 if short else 20
    quiet_for = 12.0 if short else 25.0
    receiver = QuietReceiver()
    try:
        with Stack.open(transport, directory) as stack:
            try:
                stack.app.subscribe("*", receiver.url("/expect/hook"), token=TOKEN,
                                    headers={"Expect": "100-continue"})
                refused = ""
            except ConfigError as exc:
                refused = f"{exc.field}: {exc}"
            row.check(refused.startswith("headers:") and "'Expect'" in refused,
                      f"a subscription with Expect: 100-continue was not refused ({refused!r})")
            subscriptions = [stack.subscribe(receiver.url(path)) for path in (_SILENT, _TRICKLE)]
            row.check(len(stack.app.store.list_subscriptions()) == 2,
                      "the refused subscription was stored")
            worker = stack.worker(concurrency=4,
                                  env={"ASYNCEVENTS_ATTEMPT_DEADLINE": str(_DEADLINE)})
            event_ids = [stack.app.publish("fault.deadline", {"n": n}) for n in range(events)]
            time.sleep(quiet_for)
            receiver.recover()
            arrived = _wait_for(receiver, 2 * events, timeout=180)
            worker.signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
            attempts = [a for d in stack.app.store.recent_deliveries(limit=4 * events)
                        for a in stack.app.store.list_attempts(d.id)]
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, event_ids, [_SILENT, _TRICKLE]))
    failed = [a for a in attempts if not a.success]
    ended = [a for a in failed if "no answer within" in (a.error or "")]
    longest = max((a.duration_ms for a in failed), default=0.0) / 1000
    recovered_at = receiver.recovered_at or 0.0
    last = max((h.at for h in hits), default=recovered_at)
    row.notes.append(
        f"quiet for {quiet_for:g} s, deadline {_DEADLINE:g} s (HTTP read timeout 30 s): "
        f"{len(failed)} attempts failed, {len(ended)} ended by the deadline, the longest "
        f"took {longest:.1f} s; recovery: every event arrived {last - recovered_at:.1f} s "
        f"after the receivers answered again (circuit breaker at its defaults); "
        f"{len(subscriptions)} subscriptions")
    row.check(arrived, "not every event arrived after the recovery")
    row.check(bool(failed), "no attempt failed while the receivers were quiet")
    row.check(len(ended) == len(failed),
              f"{len(failed) - len(ended)} failed attempts were not ended by the deadline")
    row.check(longest <= _DEADLINE + _MARGIN,
              f"an attempt took {longest:.1f} s, past the {_DEADLINE:g} s deadline")
    row.check(code == 0, f"the worker exited with {code} after SIGTERM")
    return row


def _wait_for(receiver: QuietReceiver, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({(h.event_id, h.path) for h in receiver.snapshot()}) >= count:
            return True
        time.sleep(0.1)
    return False
