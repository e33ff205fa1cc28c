"""The console on a 1366 px screen (issue 23, item 15), in headless Chromium.

Every page with a table is opened at 1366 x 768 with the longest values a
real installation shows: recipients with long paths, long event names and
filters, errors and responses of a few hundred characters, an open circuit.
No table may be wider than the page: nothing is cut off, nothing scrolls
sideways. What the screen shows of each page is kept in ``test-artifacts/console/``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from asyncevents.api.app import create_app
from asyncevents.api.services.tokens import create_token
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.models import Subscription
from asyncevents.core.store import CircuitPolicy, NewAttempt, Outcome
from tests.helpers import chromium, free_port, wait_until

# Chromium takes a core of its own: the browser tests share one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

WIDTH = 1366
PATH = "/".join(["webhooks", "asyncevents", "tenant-0123456789abcdef", "orders",
                 "x" * 60, "receive"])
ERROR = ("HTTP 503 Service Unavailable: upstream connect error or disconnect/reset before "
         "headers. reset reason: connection failure, transport failure reason: "
         "delayed connect error: 111 " + "y" * 90)
EVENT = "sales.order.shipment.tracking_number_assigned_by_the_carrier_integration"


@pytest.fixture
def served(make_settings: Callable[..., Any]) -> Iterator[tuple[str, App]]:
    """A real server on 127.0.0.1 over an App filled with long values (no worker)."""
    app = App(make_settings())
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port,
                                       log_level="warning", lifespan="off"))
    serving = threading.Thread(target=uv.run, daemon=True)
    serving.start()
    wait_until(lambda: uv.started)
    yield f"http://127.0.0.1:{port}", app
    uv.should_exit = True
    serving.join(30)
    app.close()


def _fill(app: App) -> tuple[Subscription, str]:
    """Subscriptions, deliveries and attempts with long values; one circuit open."""
    subs = [app.subscribe(EVENT, f"http://127.0.0.1:9/{PATH}/{n}",
                          token="whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                          filter="data.customer.email:*@example.com AND data.total:[100 TO *] "
                                 "AND NOT data.flags:test_order_from_the_staging_shop",
                          retry_policy={"max_deaths": 3})
            for n in range(6)]
    now = utcnow()
    delivery_id = ""
    for n in range(30):
        for delivery in app.store.ensure_deliveries(
                event_id=f"event-{n}", event_name=EVENT, published_at=now,
                payload={"id": n, "note": "z" * 300}, targets=subs[:2]):
            app.store.record_attempt(delivery.id, NewAttempt(
                started_at=now - timedelta(minutes=n), duration_ms=1234.5, success=False,
                status_code=503, response="<html>" + "w" * 400, error=ERROR,
                status="dead"))
            delivery_id = delivery.id
    app.store.record_health([Outcome(subs[0].id, False, ERROR, now)] * 3,
                            CircuitPolicy(consecutive_failures=2))
    return subs[0], delivery_id


def _overflow(page: Any) -> list[str]:
    """What sticks out of the page sideways: the page itself, or a table wider than it."""
    found: list[str] = page.evaluate("""() => {
      const out = [], width = window.innerWidth, main = document.querySelector("main");
      if (document.documentElement.scrollWidth > width) out.push("the page scrolls sideways");
      if (main.scrollWidth > main.clientWidth) out.push("main scrolls sideways");
      document.querySelectorAll("table").forEach((t, i) => {
        const right = t.getBoundingClientRect().right;
        if (right > width) out.push(`table ${t.id || i} ends at ${Math.round(right)} px`);
      });
      return out;
    }""")
    return found


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def test_every_table_fits_a_1366_px_screen(served: tuple[str, App], browser: Any) -> None:
    base, app = served
    sub, delivery_id = _fill(app)
    _, secret = create_token(app.store, "layout", ["admin"])
    page = browser.new_page(viewport={"width": WIDTH, "height": 768})
    page.set_default_timeout(15_000)
    page.goto(f"{base}/console/login")
    page.fill("#token", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/dashboard$"))
    pages = {"dashboard": "/console/dashboard", "deliveries": "/console/deliveries",
             "subscriptions": "/console/subscriptions",
             "subscription": f"/console/subscriptions/{sub.id}",
             "trace": f"/console/deliveries/{delivery_id}", "events": "/console/events",
             "sinks": "/console/sinks"}
    problems = {}
    for name, path in pages.items():
        page.goto(base + path)
        assert page.locator("table").count() >= 1 or name == "subscription", name
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"1366-{name}.png"))  # the screen, as seen
        if found := _overflow(page):
            problems[name] = found
    assert problems == {}
    # The circuit is a column of the list: the open one says so.
    page.goto(base + "/console/subscriptions")
    assert page.locator(f"tr[data-id='{sub.id}'] td.circuit").inner_text() == "open"
