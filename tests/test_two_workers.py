"""Two worker processes on PostgreSQL share one queue and one retry schedule."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from tests.killrun import _worker


@pytest.mark.slow
def test_two_workers_deliver_each_exactly_once(pg_url: str, make_settings: Any,
                                               httpserver: HTTPServer) -> None:
    from asyncevents.core.store import Store

    Store.open(pg_url, auto_migrate=True).close()
    settings = make_settings(transport_url=f"sqla+{pg_url}", database_url=pg_url,
                             backoff="fixed", backoff_base=0.3)
    hits: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        webhook_id = request.headers["webhook-id"]
        n = json.loads(request.get_data())["data"]["n"]
        with lock:
            hits[webhook_id] += 1
            first = hits[webhook_id] == 1
        # Every fifth event fails its first try, so it goes through the schedule.
        return Response(status=500 if first and n % 5 == 0 else 200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    app = App(settings)
    app.subscribe("*", httpserver.url_for("/hook"), token="t")
    events = 200
    for n in range(events):
        app.publish("pair.test", {"n": n})
    workers = [_worker(settings, "--max-idle-time", "2", "--time-limit", "120")
               for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=150) == 0
    deliveries = app.store.recent_deliveries(limit=events * 2)
    assert len(deliveries) == events
    assert all(d.status == "delivered" for d in deliveries)
    by_n = {d.id: d.payload["n"] for d in deliveries}
    for delivery_id, n in by_n.items():
        assert hits[delivery_id] == (2 if n % 5 == 0 else 1), (n, hits[delivery_id])
    app.close()
