"""A worker killed with SIGKILL mid-stream, several times: count what arrived.

Used by the kill tests and by anyone who wants the figures:
``python -m tests.killrun`` is not provided; call ``run_kill_scenario``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asyncevents.core.app import App
from asyncevents.core.settings import Settings


@dataclass
class Figures:
    """What a kill run published, delivered, duplicated and lost."""

    published: int
    delivered: int
    duplicated: int
    lost: int
    kills: int

    def line(self, label: str) -> str:
        return (f"{label}: published={self.published} delivered={self.delivered} "
                f"duplicated={self.duplicated} lost={self.lost} kills={self.kills}")


class _Receiver:
    def __init__(self, delay: float) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(delay)
                with receiver.lock:
                    receiver.ids[self.headers["webhook-id"]] += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update({
        "ASYNCEVENTS_TRANSPORT_URL": settings.transport_url,
        "ASYNCEVENTS_DATABASE_URL": settings.database_url,
        "ASYNCEVENTS_QUEUE_PREFIX": settings.queue_prefix,
        "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "ASYNCEVENTS_STRICT_EVENTS": "false",
        "ASYNCEVENTS_LEASE_SECONDS": str(settings.lease_seconds),
        "ASYNCEVENTS_POLLING_INTERVAL": str(settings.polling_interval),
        "ASYNCEVENTS_LOG_LEVEL": "WARNING",
    })
    return env


def _worker(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncevents", "worker", "--concurrency", "4", *extra],
        env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def run_kill_scenario(settings: Settings, events: int = 150, kills: int = 3,
                      receiver_delay: float = 0.01, timeout: float = 180) -> Figures:
    """Publish ``events``, SIGKILL the worker ``kills`` times mid-stream, then drain."""
    receiver = _Receiver(receiver_delay)
    app = App(settings)
    try:
        app.subscribe("*", receiver.url, token="whsec_a2lsbC10ZXN0LWtleS0xMjM0NTY=")
        for n in range(events):
            app.publish("kill.test", {"n": n})
        deadline = time.monotonic() + timeout
        done_kills = 0
        for k in range(kills):
            worker = _worker(settings)
            target = (k + 1) * events // (kills + 2)
            while receiver.count() < target and time.monotonic() < deadline:
                if worker.poll() is not None:
                    break
                time.sleep(0.02)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            done_kills += 1
        final = _worker(settings, "--max-idle-time", str(settings.lease_seconds + 3),
                        "--time-limit", str(max(5.0, deadline - time.monotonic())))
        final.wait(timeout=timeout)
        deliveries = app.store.recent_deliveries(limit=events * 2)
        delivered_ids = {d.id for d in deliveries if d.id in receiver.ids}
        return Figures(
            published=events,
            delivered=len(delivered_ids),
            duplicated=sum(c - 1 for c in receiver.ids.values()),
            lost=events - len(delivered_ids),
            kills=done_kills,
        )
    finally:
        receiver.server.shutdown()
        app.close()
