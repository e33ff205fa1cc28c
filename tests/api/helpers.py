"""Helpers shared by the API and console tests (and the protection tests' console checks)."""

from __future__ import annotations

import re

from tests.api.conftest import Api


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
