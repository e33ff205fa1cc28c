"""Ordering keys (issue 15, item 7): three worker processes on one PostgreSQL store and queue;
a receiver that fails some first attempts; per key, deliveries arrive one at a time and
succeed in publish order, while other keys go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from tests.protection.helpers import WHSEC


class Receiver:
    """Fails the first attempt of every third event; records successes and overlaps per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tries: dict[tuple[str, int], int] = {}
        self.succeeded: dict[str, list[int]] = {}
        self.busy: dict[str, int] = {}
        self.overlap = 0

    def __call__(self, request: Request) -> Response:
        data = json.loads(request.get_data())["data"]
        key, n = data["customer_id"], data["n"]
        with self.lock:
            self.busy[key] = self.busy.get(key, 0) + 1
            self.overlap = max(self.overlap, self.busy[key])
            tries = self.tries[(key, n)] = self.tries.get((key, n), 0) + 1
        threading.Event().wait(0.05)
        ok = not (n % 3 == 0 and tries == 1)
        with self.lock:
            self.busy[key] -= 1
            if ok:
                self.succeeded.setdefault(key, []).append(n)
        return Response("ok" if ok else "again", status=200 if ok else 503)


def _ordered(pg_url: str, make_settings: Callable[..., Settings], server: HTTPServer,
             receiver: Receiver) -> tuple[App, str]:
    """An app on PostgreSQL (store and queue), an ordered subscription to ``receiver``
    and 8 events for each of three keys; the app and the subscription's id."""
    Store.open(pg_url, auto_migrate=True).close()
    app = App(make_settings(database_url=pg_url, transport_url=f"sqla+{pg_url}",
                            queue_prefix=f"t{uuid.uuid4().hex[:12]}"))
    server.expect_request("/hook", method="POST").respond_with_handler(receiver)
    sub = app.subscribe("sales.order.created", server.url_for("/hook"), token=WHSEC,
                        ordering_key="data.customer_id")
    for n in range(8):
        for customer in ("alice", "bob", "carol"):
            app.publish("sales.order.created", {"customer_id": customer, "n": n})
    return app, sub.id


def _worker_env(app: App, pg_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker process on ``app``'s store and queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update({
        "ASYNCEVENTS_DATABASE_URL": pg_url, "ASYNCEVENTS_TRANSPORT_URL": f"sqla+{pg_url}",
        "ASYNCEVENTS_SECRET_KEY": "the test suite's token key",
        "ASYNCEVENTS_QUEUE_PREFIX": app.settings.queue_prefix,
        "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8", "ASYNCEVENTS_STRICT_EVENTS": "false",
        **extra})
    return env


def test_one_at_a_time_in_publish_order_per_key_across_three_workers(
        pg_url: str, make_settings: Callable[..., Settings], server: HTTPServer) -> None:
    receiver = Receiver()
    app, sub_id = _ordered(pg_url, make_settings, server, receiver)
    try:
        env = _worker_env(app, pg_url, ASYNCEVENTS_POLLING_INTERVAL="0.05",
                          ASYNCEVENTS_BACKOFF="fixed", ASYNCEVENTS_BACKOFF_BASE="0.2")
        workers = [subprocess.Popen(
            [sys.executable, "-m", "asyncevents", "worker", "--concurrency", "4",
             "--max-idle-time", "4", "--time-limit", "120"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(3)]
        for worker in workers:
            assert worker.wait(150) == 0
        assert receiver.overlap == 1  # one at a time per key
        for customer in ("alice", "bob", "carol"):
            assert receiver.succeeded[customer] == list(range(8)), customer
        mine = [d for d in app.store.recent_deliveries(100) if d.subscription_id == sub_id]
        assert len(mine) == 24 and all(d.status == "delivered" for d in mine)
    finally:
        app.close()


@pytest.mark.slow
def test_order_is_kept_when_a_worker_is_killed_mid_delivery(
        pg_url: str, make_settings: Callable[..., Settings], server: HTTPServer) -> None:
    """kill -9 of one of three workers: its keys wait for their lease, then go on in order."""
    import signal
    import time

    receiver = Receiver()
    app, _ = _ordered(pg_url, make_settings, server, receiver)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = _worker_env(app, pg_url)  # the lease, timeouts and retry policy at their defaults
        workers = [subprocess.Popen(
            [sys.executable, "-m", "asyncevents", "worker", "--concurrency", "4",
             "--time-limit", "170"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(3)]

        def successes() -> int:
            with receiver.lock:
                return sum(len(v) for v in receiver.succeeded.values())

        deadline = time.monotonic() + 60
        while successes() < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers[0].send_signal(signal.SIGKILL)  # mid-stream: some keys' leases are its
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not all(
                set(receiver.succeeded.get(c, ())) == set(range(8))
                for c in ("alice", "bob", "carol")):
            time.sleep(0.2)
        assert receiver.overlap == 1  # never two at once for a key, kill included
        for customer in ("alice", "bob", "carol"):
            got = receiver.succeeded[customer]
            # At least once: a request the killed worker had sent may come again,
            # but never before an earlier event of the same key.
            assert set(got) == set(range(8)), (customer, got)
            assert got == sorted(got), (customer, got)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        app.close()
