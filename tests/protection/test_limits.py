"""Rate limit and max-in-flight per subscription (issue 15, item 6), shared by several worker
processes over one PostgreSQL store and queue, measured at a real local receiver: deliveries
over the limit wait without using an attempt."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.store import Store
from tests.protection.helpers import WHSEC


class Arrivals:
    """When each request came, and how many were being answered at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.times: list[float] = []
        self.now = 0
        self.most = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        with self.lock:
            self.times.append(time.monotonic())
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
        return Response("ok")


def _workers(settings: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update({
        "ASYNCEVENTS_DATABASE_URL": settings.database_url,
        "ASYNCEVENTS_TRANSPORT_URL": settings.transport_url,
        "ASYNCEVENTS_SECRET_KEY": "the test suite's token key",
        "ASYNCEVENTS_QUEUE_PREFIX": settings.queue_prefix,
        "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "ASYNCEVENTS_STRICT_EVENTS": "false",
        "ASYNCEVENTS_POLLING_INTERVAL": "0.05",
    })
    return [subprocess.Popen([sys.executable, "-m", "asyncevents", "worker", "--concurrency",
                              "4", "--max-idle-time", "4", "--time-limit", "90"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


@pytest.fixture
def pg_app(pg_url: str, make_settings: Callable[..., Settings]) -> Iterator[App]:
    Store.open(pg_url, auto_migrate=True).close()
    app = App(make_settings(database_url=pg_url, transport_url=f"sqla+{pg_url}",
                            queue_prefix=f"t{uuid.uuid4().hex[:12]}"))
    yield app
    app.close()


def _run(app: App, processes: int, events: int) -> None:
    # Published first, so that every worker starts with a full queue to share.
    for n in range(events):
        app.publish("sales.order.created", {"n": n})
    workers = _workers(app.settings, processes)
    for worker in workers:
        assert worker.wait(120) == 0


def test_three_workers_share_one_rate_limit(pg_app: App, server: HTTPServer) -> None:
    arrivals = Arrivals()
    server.expect_request("/hook", method="POST").respond_with_handler(arrivals)
    sub = pg_app.subscribe("sales.order.created", server.url_for("/hook"), token=WHSEC,
                           rate="4/s")
    _run(pg_app, processes=3, events=16)
    assert len(arrivals.times) == 16
    # The bucket holds one second (4); then 4 a second, whichever worker sends:
    # 8 permits at most in any second, plus a request or two a loaded machine
    # granted earlier but sent late. Unlimited, 3 workers x 4 slots send the 16
    # within a fraction of a second.
    times = sorted(arrivals.times)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 10, busiest
    assert times[-1] - times[0] >= 2.0  # (16 - 4) / 4 = 3 s at least, less a bucket's slack
    mine = [d for d in pg_app.store.recent_deliveries(100) if d.subscription_id == sub.id]
    assert [d.status for d in mine] == ["delivered"] * 16
    assert all(d.attempts == 1 for d in mine)  # waiting used no attempt


def test_three_workers_share_max_in_flight(pg_app: App, server: HTTPServer) -> None:
    arrivals = Arrivals(delay=0.3)
    server.expect_request("/hook", method="POST").respond_with_handler(arrivals)
    sub = pg_app.subscribe("sales.order.created", server.url_for("/hook"), token=WHSEC,
                           max_in_flight=2)
    _run(pg_app, processes=3, events=12)
    assert len(arrivals.times) == 12
    assert arrivals.most <= 2, arrivals.most  # unlimited: up to 12 at once
    mine = [d for d in pg_app.store.recent_deliveries(100) if d.subscription_id == sub.id]
    assert [d.status for d in mine] == ["delivered"] * 12
    assert all(d.attempts == 1 for d in mine)


def test_the_rest_of_the_installation_is_not_slowed(
        server: HTTPServer, make_settings: Callable[..., Settings]) -> None:
    from tests.helpers import Recorder, drain
    app = App(make_settings())
    recorder = Recorder(server)
    try:
        slow = app.subscribe("sales.order.created", recorder.route("/slow"), token=WHSEC,
                             rate="1/m")
        fast = app.subscribe("sales.order.created", recorder.route("/fast"), token=WHSEC)
        for n in range(5):
            app.publish("sales.order.created", {"n": n})
        drain(app, idle=1.5)
        assert len(recorder.on("/fast")) == 5  # all, while the limited one waits
        assert len(recorder.on("/slow")) == 1  # one token; the others wait a minute each
        waiting: list[Any] = [d for d in app.store.recent_deliveries(100)
                              if d.subscription_id == slow.id and d.status != "delivered"]
        assert len(waiting) == 4 and all(d.attempts == 0 for d in waiting)
        assert fast.id != slow.id
    finally:
        app.close()
