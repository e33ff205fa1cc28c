"""The console end to end in headless Chromium, against a real server and a real worker.

A uvicorn server and a worker run in this process; a pytest-httpserver
receiver refuses the first delivery (HTTP 400, so it is dead at once) and
accepts the replay. In the browser: log in, search, open the trace, replay
after the confirmation page, and see the new successful attempt. Each page
is kept as a screenshot in ``test-artifacts/console/`` (git-ignored).

Chromium comes from Debian (``scripts/install-browser.sh``); when it is
missing this test fails, it never skips.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pytest_httpserver import HTTPServer

from asyncevents.api.app import create_app
from asyncevents.api.services.tokens import create_token
from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.settings import EventDefinition
from asyncevents.core.worker.worker import WorkerLimits
from tests.helpers import Recorder, free_port, wait_until

# Chromium takes a core of its own: the browser tests share one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--disable-dev-shm-usage"]


@pytest.fixture
def server(make_settings: Callable[..., Any]) -> Iterator[tuple[str, App]]:
    """A real server on 127.0.0.1 and a worker, both in this process."""
    app = App(make_settings())
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port,
                                       log_level="warning", lifespan="off"))
    serving = threading.Thread(target=uv.run, daemon=True)
    serving.start()
    worker = app.worker(WorkerLimits(concurrency=2))
    working = threading.Thread(target=worker.run, daemon=True)
    working.start()
    wait_until(lambda: uv.started)
    yield f"http://127.0.0.1:{port}", app
    worker.stop("test over")
    uv.should_exit = True
    working.join(30)
    serving.join(30)
    app.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (Debian packages "
                    "chromium and chromium-driver) before the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_log_in_search_trace_replay(server: tuple[str, App], browser: Any,
                                   httpserver: HTTPServer) -> None:
    base, app = server
    recorder = Recorder(httpserver)
    sub = app.subscribe("sales.order.created", recorder.route("/hook", [400]), token="secret",
                        metadata={"team": "shop"})
    app.subscribe("customer.*", recorder.route("/crm"), token="secret")
    app.publish("sales.order.created", {"id": 42, "customer": {"email": "ann@example.com"}})
    app.publish("customer.registered", {"id": 7})
    wait_until(lambda: len(recorder.hits) == 2)
    wait_until(lambda: {d.status for d in app.store.recent_deliveries()} == {"dead", "delivered"})
    _, secret = create_token(app.store, "browser", ["admin"])

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(15_000)
    page.goto(f"{base}/console/deliveries")
    assert page.url.endswith("/console/login")  # no session yet
    shot(page, "01-login")
    page.fill("#token", "ae_wrong")
    page.click("button[type=submit]")
    assert "unknown, expired or revoked token" in page.inner_text("[role=alert]")
    page.fill("#token", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/dashboard$"))
    assert page.locator("#chart-hour").is_visible()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "asyncevents_session"]
    assert cookie["httpOnly"] and cookie["value"] != secret  # a session id, not the token
    page.click("nav >> text=Deliveries")
    page.wait_for_url(re.compile(r".*/console/deliveries$"))
    assert page.locator("#deliveries tbody tr").count() == 2
    shot(page, "02-deliveries")

    page.fill("input[name=q]", "status:dead AND data.customer.email:*@example.com")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url(re.compile(r".*q=status"))
    rows = page.locator("#deliveries tbody tr")
    assert rows.count() == 1
    shot(page, "03-search")

    rows.first.locator("a").first.click()
    page.wait_for_url(re.compile(r".*/console/deliveries/[0-9a-f-]{36}$"))
    assert page.inner_text("#status") == "dead"
    assert page.locator("#attempts tbody tr").count() == 1
    assert "400" in page.inner_text("#attempts")
    assert '"email": "ann@example.com"' in page.inner_text("#payload")
    shot(page, "04-trace-dead")

    page.click("text=Replay")
    page.wait_for_url(re.compile(r".*/replay$"))
    assert "Replay this delivery?" in page.inner_text("h1")
    shot(page, "05-replay-confirm")
    page.click("#confirm-replay")
    page.wait_for_url(re.compile(r".*message=replay"))
    assert "replay queued" in page.inner_text("[role=status]")

    def replayed() -> bool:
        page.reload()
        count: int = page.locator("#attempts tbody tr").count()
        return count == 2

    wait_until(replayed)
    assert page.inner_text("#status") == "delivered"
    last = page.locator("#attempts tbody tr").nth(1).inner_text()
    assert "(replay)" in last and "success" in last and "200" in last
    shot(page, "06-trace-replayed")
    assert len(recorder.on("/hook")) == 2

    page.click("nav >> text=Subscriptions")
    page.wait_for_url(re.compile(r".*/console/subscriptions$"))
    assert page.locator("#mass tbody tr").count() == 2
    page.check(f"input[name=ids][value='{sub.id}']")
    page.click("button[name=action][value=disable]")
    page.wait_for_url(re.compile(r".*message="))
    assert "1 subscription disabled" in page.inner_text("[role=status]")
    assert app.store.get_subscription(sub.id).active is False
    shot(page, "07-subscriptions")

    page.click("nav >> text=Events")
    shot(page, "08-events")
    page.click("nav >> text=Sinks")
    assert "http" in page.inner_text("table")
    shot(page, "09-sinks")

    with page.expect_download() as download:
        page.goto(f"{base}/console/deliveries")
        page.click("text=Export CSV")
    exported = Path(download.value.path()).read_text()
    assert exported.splitlines()[0].startswith("uuid,event_name")
    assert len(exported.splitlines()) == 3

    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto(f"{base}/console/deliveries")
    assert page.url.endswith("/console/login")
    # The logout ended the session on the server: the cookie, kept from before, opens nothing.
    kept = browser.new_context()
    kept.add_cookies([cookie])
    again = kept.new_page()
    again.goto(f"{base}/console/deliveries")
    assert again.url.endswith("/console/login")
    kept.close()


def log_in(browser: Any, base: str, secret: str) -> Any:
    # Wide enough for the deliveries grid, whose uuids do not wrap, to fit the screenshots.
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{base}/console/login")
    page.fill("#token", secret)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/dashboard$"))
    return page


def test_the_console_as_an_admin(server: tuple[str, App], browser: Any,
                                 httpserver: HTTPServer) -> None:
    """Dashboard, create and edit a subscription (live filter check), paging, 403."""
    from playwright.sync_api import expect

    base, app = server
    recorder = Recorder(httpserver)
    failing = app.subscribe("customer.*", recorder.route("/down", [400]), token="secret")
    app.publish("customer.registered", {"id": 7})
    wait_until(lambda: [d.status for d in app.store.recent_deliveries()] == ["dead"])
    app.catalog.definitions["legacy.thing"] = EventDefinition(description="old",
                                                              deprecated=True)
    _, secret = create_token(app.store, "admin", ["admin"])
    page = log_in(browser, base, secret)
    assert page.locator("#chart-hour rect").count() >= 1  # the failed attempt, drawn
    assert failing.id in page.inner_text("#failing")
    assert "deliver" in page.inner_text("#queues")
    shot(page, "10-dashboard")

    page.click("nav >> text=Subscriptions")
    page.click("#new-subscription")
    page.wait_for_url(re.compile(r".*/subscriptions/new$"))
    page.fill("#event_name", "sales.order.created")
    page.fill("#recipient", "http://10.0.0.1/hook")
    page.fill("#token", "s3cret-token")
    page.fill("#filter", "data.total:(")
    expect(page.locator("#filter-check")).to_contain_text("syntax error")  # by fetch, live
    expect(page.locator("#filter")).to_have_attribute("aria-invalid", "true")
    shot(page, "11-filter-live-check")
    page.fill("#filter", "data.total:[100 TO *]")
    expect(page.locator("#filter-check")).to_contain_text("valid filter")
    page.fill("input[name=max_deaths]", "2")
    page.click("#save")
    assert "internal address" in page.inner_text("#form-error")
    assert page.input_value("#token") == ""  # never sent back
    assert page.input_value("#filter") == "data.total:[100 TO *]"  # kept
    shot(page, "12-create-refused")
    page.fill("#recipient", recorder.route("/orders"))
    page.fill("#token", "s3cret-token")
    page.click("#save")
    page.wait_for_url(re.compile(r".*/console/subscriptions/[0-9a-f-]{36}\?message=.*"))
    assert "subscription created" in page.inner_text("[role=status]")
    sub_id = page.url.split("/subscriptions/")[1].split("?")[0]
    sub = app.store.get_subscription(sub_id)
    assert sub.token == "s3cret-token" and sub.retry_policy == {"max_deaths": 2}
    assert "s3cret-token" not in page.content()

    app.publish("sales.order.created", {"id": 1, "total": 150})
    app.publish("sales.order.created", {"id": 2, "total": 5})  # filtered out
    wait_until(lambda: len(recorder.on("/orders")) == 1)
    wait_until(lambda: app.store.subscription_health([sub_id])[sub_id].delivered == 1)
    page.reload()
    assert "100.0 %" in page.inner_text("#ratio")
    page.fill("input[name=max_deaths]", "4")
    page.select_option("select[name=backoff]", "linear")
    page.click("#save")
    page.wait_for_url(re.compile(r".*message=subscription\+saved.*"))
    assert app.store.get_subscription(sub_id).retry_policy == {"max_deaths": 4,
                                                               "backoff": "linear"}
    shot(page, "13-subscription")

    for i in range(60):
        app.store.ensure_deliveries(event_id=f"seeded-{i}", event_name="sales.order.created",
                                    published_at=utcnow(), payload={"id": i}, targets=[sub])
    page.click("nav >> text=Deliveries")
    assert page.inner_text("#count") == "1\u201350 of 62"
    uuid_cell = page.locator("#deliveries tbody tr td.uuid").first
    assert uuid_cell.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    shot(page, "14-deliveries-page-1")
    page.locator("a.older").first.click()
    page.wait_for_url(re.compile(r".*before=.*"))
    assert page.inner_text("#count") == "51\u201362 of 62"
    shot(page, "15-deliveries-page-2")
    page.locator("a.newer").first.click()
    page.wait_for_url(re.compile(r".*after=.*"))
    assert page.inner_text("#count") == "1\u201350 of 62"
    page.locator(f"#deliveries a[href='/console/subscriptions/{sub_id}']").first.click()
    page.wait_for_url(re.compile(rf".*/console/subscriptions/{sub_id}$"))

    dead = next(d for d in app.store.recent_deliveries(limit=100)
                if d.subscription_id == failing.id)
    page.goto(f"{base}/console/subscriptions/{failing.id}")
    page.click("button[name=action][value=delete]")
    page.wait_for_url(re.compile(r".*deleted.*"))
    page.goto(f"{base}/console/deliveries/{dead.id}")
    assert page.locator("#no-replay").is_visible()
    assert page.locator("a[href$='/replay']").count() == 0
    shot(page, "16-trace-deleted-subscription")

    page.click("nav >> text=Events")
    assert "deprecated" in page.inner_text("tr:has-text('legacy.thing')")
    shot(page, "17-events")

    _, reader = create_token(app.store, "reader", ["deliveries:read"])
    other = log_in(browser, base, reader)
    other.goto(f"{base}/console/subscriptions")
    assert other.inner_text("main").count("lacks the") == 1
    assert other.locator(".flash").count() == 0
    assert other.locator("nav >> text=Deliveries").is_visible()
    shot(other, "18-forbidden")
