"""The web console over the test client: login, CSRF, scopes, pages, actions."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import Api
from tests.api.helpers import csrf, login


def test_pages_need_a_session(api: Api) -> None:
    for page in ("/console/deliveries", "/console/subscriptions", "/console/events",
                 "/console/sinks", "/console/deliveries/x"):
        response = api.client.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/console/"


def test_login_sets_a_strict_httponly_cookie(api: Api) -> None:
    form = api.client.get("/console/login")
    assert form.status_code == 200
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    response = api.client.post("/console/login", data={"token": api.tokens["admin"],
                                                       "login_csrf": value},
                               follow_redirects=False)
    cookie = next(c for c in response.headers.get_list("set-cookie")
              if c.startswith("asyncevents_session=")).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert api.client.get("/console/deliveries").status_code == 200


def test_login_refuses_bad_tokens_and_forged_forms(api: Api) -> None:
    form = api.client.get("/console/login")
    value = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    bad = api.client.post("/console/login", data={"token": "ae_wrong", "login_csrf": value})
    assert bad.status_code == 401 and "unknown, expired or revoked token" in bad.text
    api.client.cookies.clear()
    forged = api.client.post("/console/login", data={"token": api.tokens["admin"],
                                                     "login_csrf": "guess"})
    assert forged.status_code == 403
    assert "asyncevents_session" not in api.client.cookies


def test_every_page_renders_with_security_headers(api: Api) -> None:
    sub = api.subscription(filter="data.id:1")
    delivery = api.delivery(sub, {"id": 1, "note": "<script>alert(1)</script>"})
    login(api)
    for page in ("/console/deliveries", "/console/deliveries?q=status:pending",
                 "/console/subscriptions", f"/console/deliveries/{delivery.id}",
                 f"/console/deliveries/{delivery.id}/replay", "/console/events",
                 "/console/sinks"):
        response = api.client.get(page)
        assert response.status_code == 200, page
        assert "script-src" not in response.headers["content-security-policy"]  # none at all
        assert response.headers["x-frame-options"] == "DENY"
        assert "<script>" not in response.text  # payloads are escaped
    trace = api.client.get(f"/console/deliveries/{delivery.id}").text
    assert "&lt;script&gt;" in trace and delivery.id in trace


def test_search_errors_show_on_the_page(api: Api) -> None:
    login(api)
    response = api.client.get("/console/deliveries", params={"q": "status:("})
    assert response.status_code == 422 and "syntax error" in response.text
    missing = api.client.get("/console/deliveries/nope")
    assert missing.status_code == 404 and "no delivery" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


def test_mass_actions_need_csrf_and_scope(api: Api) -> None:
    subs = [api.subscription(recipient=f"http://127.0.0.1:9/{i}") for i in range(3)]
    login(api)
    token = csrf(api)
    ids = [subs[0].id, subs[2].id]
    forged = api.client.post("/console/subscriptions/action",
                             data={"action": "disable", "ids": ids, "csrf": "0" * 64})
    assert forged.status_code == 403
    foreign = api.client.post("/console/subscriptions/action",
                              data={"action": "disable", "ids": ids, "csrf": token},
                              headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert all(s.active for s in api.app.store.list_subscriptions())
    done = api.client.post("/console/subscriptions/action",
                           data={"action": "disable", "ids": ids, "csrf": token})
    assert done.status_code == 200 and "2 subscriptions disabled" in done.text
    assert [s.active for s in api.app.store.list_subscriptions()] == [False, True, False]
    one = api.client.post(f"/console/subscriptions/action?only={subs[0].id}",
                          data={"action": "enable", "ids": ids, "csrf": token})
    assert "1 subscription enabled" in one.text
    assert [s.active for s in api.app.store.list_subscriptions()] == [True, True, False]
    api.client.post("/console/subscriptions/action",
                    data={"action": "delete", "ids": [subs[1].id], "csrf": token})
    assert [s.id for s in api.app.store.list_subscriptions()] == [subs[0].id, subs[2].id]


@pytest.mark.parametrize(("scope", "page", "allowed"), [
    ("deliveries:read", "/console/deliveries", True),
    ("deliveries:read", "/console/subscriptions", False),
    ("deliveries:read", "/console/deliveries/{d}/replay", False),
    ("deliveries:replay", "/console/deliveries/{d}/replay", True),
    ("subscriptions:read", "/console/events", True),
    ("subscriptions:read", "/console/deliveries", False),
    ("deliveries:read", "/console/dashboard", True),
    ("subscriptions:read", "/console/dashboard", False),
    ("subscriptions:read", "/console/subscriptions/{s}", True),
    ("deliveries:read", "/console/subscriptions/{s}", False),
    ("subscriptions:read", "/console/subscriptions/new", False),
    ("subscriptions:write", "/console/subscriptions/new", True),
])
def test_pages_check_scopes(api: Api, scope: str, page: str, allowed: bool) -> None:
    sub = api.subscription()
    delivery = api.delivery(sub)
    login(api, scope)
    response = api.client.get(page.format(d=delivery.id, s=sub.id))
    assert response.status_code == (200 if allowed else 403)
    if not allowed:
        assert "lacks the" in response.text


def test_replay_from_the_console(api: Api) -> None:
    delivery = api.delivery(api.subscription())
    api.app.store.set_delivery_status(delivery.id, "dead")
    login(api, "deliveries:replay")
    # deliveries:replay alone may not read the trace, but may confirm and replay.
    page = api.client.get(f"/console/deliveries/{delivery.id}/replay").text
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert api.client.post(f"/console/deliveries/{delivery.id}/replay",
                           data={"csrf": "bad"}).status_code == 403
    assert api.app.store.get_delivery(delivery.id).status == "dead"
    done = api.client.post(f"/console/deliveries/{delivery.id}/replay", data={"csrf": token},
                           follow_redirects=False)
    assert done.status_code == 303
    assert api.app.store.get_delivery(delivery.id).status == "pending"


def test_csv_export_and_logout(api: Api) -> None:
    sub = api.subscription()
    ids = {api.delivery(sub).id for _ in range(3)}
    login(api)
    export = api.client.get("/console/deliveries.csv", params={"q": "status:pending"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert {line.split(",")[0] for line in export.text.splitlines()[1:]} == ids
    token = csrf(api)
    out = api.client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert api.client.get("/console/deliveries", follow_redirects=False).status_code == 303
