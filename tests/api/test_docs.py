"""``/docs`` works offline: the page and every asset it loads come from this server."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from asyncevents.api.app import create_app
from asyncevents.core.app import App
from tests.api.conftest import Api

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "docs"


def _urls(page: str) -> list[str]:
    """Every URL the page loads: src and href attributes, and the document's url."""
    found = re.findall(r'(?:src|href)="([^"]+)"', page)
    found += re.findall(r"url: '([^']+)'", page)
    return found


def test_docs_load_only_local_assets(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = _urls(page.text)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= {"swagger-ui-bundle.js", "swagger-ui.css",
                                                    "openapi.json"}
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url  # this server only
        assert api.client.get(url).status_code == 200, url
    assert "validatorUrl" in page.text and '"validatorUrl": null' in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    js = api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"] and "SwaggerUIBundle" in js.text


def test_docs_sends_the_consoles_frame_and_content_security_headers(api: Api) -> None:
    page = api.client.get("/docs")
    console = api.client.get("/console/login")
    for name in ("x-frame-options", "x-content-type-options", "referrer-policy"):
        assert page.headers[name] == console.headers[name], name
    assert page.headers["x-frame-options"] == "DENY"
    csp = dict(part.strip().split(" ", 1)
               for part in page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'" and csp["connect-src"] == "'self'"
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    # The one inline script runs by a nonce fresh for each response.
    nonce = re.search(r"'nonce-([^']+)'", csp["script-src"]).group(1)  # type: ignore[union-attr]
    inline = re.findall(r"<script([^>]*)>\s*const ui", page.text)
    assert inline == [f' nonce="{nonce}"']
    again = api.client.get("/docs").headers["content-security-policy"]
    assert f"'nonce-{nonce}'" not in again


def test_docs_behind_a_proxy_prefix(api: Api) -> None:
    client = TestClient(create_app(api.app), root_path="/events-api")
    page = client.get("/docs").text
    urls = _urls(page)
    assert urls and all(u.startswith("/events-api/") for u in urls), urls
    client.close()


@pytest.fixture
def served(make_settings: Callable[..., Any]) -> Iterator[str]:
    """The API on a real port, in this process."""
    import socket

    app = App(make_settings())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    app.close()


@pytest.mark.slow
@pytest.mark.xdist_group("browser")  # with the console's browser tests
def test_swagger_ui_renders_with_the_network_cut_off(served: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh")
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    refused: list[str] = []  # what the Content-Security-Policy blocked, if anything

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(served):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: refused.append(message.text)
                    if "Content Security Policy" in message.text else None)
            page.route("**/*", only_this_server)
            page.goto(f"{served}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
            assert page.locator(".opblock").count() > 10
            assert "/v1/subscriptions" in page.content()
            # Swagger UI works under the policy: expand an operation, open the Authorize box.
            page.locator(".opblock-summary").first.click()
            page.wait_for_selector(".opblock-body", timeout=10_000)
            page.click("button.authorize")
            page.wait_for_selector(".modal-ux", timeout=10_000)
        finally:
            browser.close()
    assert outside == []
    assert refused == []
