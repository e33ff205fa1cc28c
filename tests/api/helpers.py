"""Helpers shared by the API and console tests (and the protection tests' console checks)."""

from __future__ import annotations

import re

from tests.api.conftest import TOKEN, Api

GOOD = {"event_name": "shop.order.created", "sink": "http",
        "recipient": "http://127.0.0.1:9/new", "token": TOKEN, "filter": "",
        "max_deaths": "", "backoff": "", "base": "", "max_backoff": "", "jitter": ""}
"""A subscription form the console accepts, as posted."""


def login(api: Api, scope: str = "admin") -> None:
    """Log the test client into the console with the token of ``scope``."""
    form = api.client.get("/console/login")
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert value is not None
    response = api.client.post("/console/login", data={
        "token": api.tokens[scope], "login_csrf": value.group(1)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console/dashboard"


def csrf(api: Api, page: str = "/console/subscriptions") -> str:
    """The CSRF token of a console page's forms."""
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', api.client.get(page).text)
    assert match is not None
    return match.group(1)


def queued(api: Api) -> dict[str, int]:
    """Messages waiting in each of the app's queues."""
    conn = api.app.transport.connect()
    sizes = {}
    try:
        for queue in api.app.transport.topology.queues:
            with conn.channel() as channel:
                try:
                    sizes[queue.name] = channel.queue_declare(queue=queue.name,
                                                              passive=True).message_count
                except Exception:
                    sizes[queue.name] = 0
    finally:
        conn.release()
    return sizes


def form_errors(html: str) -> dict[str, str]:
    """The refusals a console form page lists above the form, by field."""
    summary = re.search(r'<div class="error" role="alert" id="form-error">(.*?)</div>', html,
                        re.DOTALL)
    assert summary is not None, html
    return dict(re.findall(r'<li data-field="([^"]+)">.*?<span class="message">([^<]*)</span>',
                           summary.group(1)))


def one_line_error(html: str) -> str:
    """The one refusal of a console form page (exactly one), as listed above the form."""
    errors = form_errors(html)
    assert len(errors) == 1, errors
    return next(iter(errors.values()))
