"""The console as an admin, over the test client: create and edit subscriptions with the
REST API's rules, the live filter check, paging, replay of deleted subscriptions, 403 page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from asyncevents.core.settings import EventDefinition
from tests.api.conftest import TOKEN, Api
from tests.api.helpers import GOOD, csrf, login, one_line_error


def test_create_a_subscription(api: Api) -> None:
    login(api)
    form = api.client.get("/console/subscriptions/new")
    assert form.status_code == 200
    assert 'name="token"' in form.text and 'type="password"' in form.text
    done = api.client.post("/console/subscriptions/new", follow_redirects=False, data={
        **GOOD, "csrf": csrf(api, "/console/subscriptions/new"), "filter": "data.total:[100 TO *]",
        "max_deaths": "3", "backoff": "linear", "base": "0.5", "max_backoff": "30",
        "jitter": "0.2"})
    assert done.status_code == 303, done.text
    (sub,) = api.app.store.list_subscriptions()
    assert done.headers["location"].startswith(f"/console/subscriptions/{sub.id}?message=")
    assert sub.recipient == GOOD["recipient"] and sub.filter == "data.total:[100 TO *]"
    # Numbers as the REST API stores them from JSON, not the form's text.
    assert sub.retry_policy == {"max_deaths": 3, "backoff": "linear", "base": 0.5,
                                "max_backoff": 30, "jitter": 0.2}
    assert api.app.store.get_subscription(sub.id).token == TOKEN
    page = api.client.get(done.headers["location"]).text
    assert "subscription created" in page and TOKEN not in page  # write-only


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"recipient": "http://169.254.169.254/latest"}, "recipient", "169.254.169.254"),
    ({"recipient": "http://10.0.0.1/hook"}, "recipient", "internal address"),
    ({"token": "   "}, "token", "only whitespace"),
    ({"token": ""}, "token", "a verification token is required: the http sink signs"),
    ({"filter": "data.id:("}, "filter", "syntax error"),
    ({"max_deaths": "-1"}, "retry_policy", "max_deaths"),
    ({"jitter": "2"}, "retry_policy", "jitter"),
    ({"backoff": "cubic"}, "retry_policy", "backoff"),
    ({"max_deaths": "lots"}, "retry_policy", "max_deaths"),
    ({"base": "inf"}, "retry_policy", "finite"),
    ({"sink": "nope"}, "sink", "nope"),
])
def test_create_refuses_what_the_api_refuses(api: Api, change: dict[str, str], field: str,
                                             words: str) -> None:
    login(api)
    data = {**GOOD, **change, "csrf": csrf(api, "/console/subscriptions/new")}
    response = api.client.post("/console/subscriptions/new", data=data)
    assert response.status_code == 422
    line = one_line_error(response.text)
    assert words in line and "\n" not in line
    assert f'name="{field}"' in response.text or field == "retry_policy"
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', response.text) or \
        (field == "retry_policy" and 'class="policy" aria-invalid="true"' in response.text)
    assert TOKEN not in response.text  # the token typed is not sent back
    if "recipient" in change:
        assert change["recipient"] in response.text  # what was typed is kept
    assert api.app.store.list_subscriptions() == []
    # The REST API refuses the same input, naming the same field.
    body: dict[str, Any] = {"event_name": data["event_name"], "recipient": data["recipient"],
                            "verification_token": data["token"], "sink": data["sink"]}
    if data["filter"]:
        body["filter"] = data["filter"]
    rest = api.client.post("/v1/subscriptions", json=body, headers=api.auth())
    if field != "retry_policy":
        assert rest.status_code == 422 and rest.json()["field"] in (
            field, "verification_token")


def test_edit_a_subscription(api: Api) -> None:
    sub = api.subscription(filter="data.id:1", retry_policy={"max_deaths": 2, "max_age": 60})
    login(api)
    page = api.client.get(f"/console/subscriptions/{sub.id}").text
    assert 'value="data.id:1"' in page and 'name="max_deaths" value="2"' in page
    assert TOKEN not in page and 'name="token" value=""' in page
    token = csrf(api, f"/console/subscriptions/{sub.id}")
    form = {**GOOD, "csrf": token, "token": "", "recipient": "http://127.0.0.1:9/moved",
            "filter": "data.id:2", "max_deaths": "4", "jitter": "0.5"}
    done = api.client.post(f"/console/subscriptions/{sub.id}", data=form,
                           follow_redirects=False)
    assert done.status_code == 303, done.text
    after = api.app.store.get_subscription(sub.id)
    assert after.recipient == "http://127.0.0.1:9/moved" and after.filter == "data.id:2"
    assert after.retry_policy == {"max_deaths": 4, "jitter": 0.5, "max_age": 60}  # kept
    assert after.token == TOKEN  # an empty token field keeps the token
    rotated = api.client.post(f"/console/subscriptions/{sub.id}",
                              data={**form, "token": "another secret"})
    assert rotated.status_code == 200 and "subscription saved" in rotated.text
    assert api.app.store.get_subscription(sub.id).token == "another secret"
    assert "another secret" not in rotated.text


@pytest.mark.parametrize(("change", "words"), [
    ({"filter": "data.id:(("}, "syntax error"),
    ({"recipient": "http://192.168.1.1/x"}, "internal address"),
    ({"token": " \t "}, "only whitespace"),
    ({"recipient": ""}, "recipient"),
    ({"max_backoff": "0"}, "max_backoff"),
])
def test_edit_refusals_leave_the_data_untouched(api: Api, change: dict[str, str],
                                                words: str) -> None:
    sub = api.subscription(filter="data.id:1")
    before = api.app.store.get_subscription(sub.id)
    login(api)
    token = csrf(api, f"/console/subscriptions/{sub.id}")
    form = {**GOOD, "csrf": token, "token": "", "filter": "data.id:1",
            "recipient": sub.recipient, "max_deaths": "9", **change}
    response = api.client.post(f"/console/subscriptions/{sub.id}", data=form)
    assert response.status_code == 422
    line = one_line_error(response.text)
    assert words in line and "\n" not in line
    assert api.app.store.get_subscription(sub.id) == before


def test_enable_and_disable_from_the_subscription_page(api: Api) -> None:
    sub = api.subscription()
    login(api)
    token = csrf(api, f"/console/subscriptions/{sub.id}")
    done = api.client.post(f"/console/subscriptions/action?only={sub.id}&to=page",
                           data={"action": "disable", "csrf": token}, follow_redirects=False)
    assert done.headers["location"].startswith(f"/console/subscriptions/{sub.id}?message=")
    assert api.app.store.get_subscription(sub.id).active is False
    page = api.client.get(done.headers["location"]).text
    assert "1 subscription disabled" in page and 'value="enable"' in page


def test_forms_need_csrf_and_the_write_scope(api: Api) -> None:
    sub = api.subscription()
    login(api, "subscriptions:read")
    token = csrf(api, f"/console/subscriptions/{sub.id}")
    refused = api.client.post(f"/console/subscriptions/{sub.id}",
                              data={**GOOD, "csrf": token, "recipient": "http://127.0.0.1:9/x"})
    assert refused.status_code == 403 and "subscriptions:write" in refused.text
    assert api.client.get("/console/subscriptions/new").status_code == 403
    api.client.cookies.clear()
    login(api)
    forged = api.client.post(f"/console/subscriptions/{sub.id}",
                             data={**GOOD, "csrf": "0" * 64, "recipient": "http://127.0.0.1:9/x"})
    assert forged.status_code == 403
    foreign = api.client.post("/console/subscriptions/new", data={
        **GOOD, "csrf": csrf(api)}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert [s.recipient for s in api.app.store.list_subscriptions()] == [sub.recipient]


def test_the_live_filter_check(api: Api) -> None:
    login(api)
    ok = api.client.get("/console/subscriptions/check-filter", params={"filter": "data.a:1"})
    assert ok.json() == {"ok": True}
    bad = api.client.get("/console/subscriptions/check-filter", params={"filter": "data.a:("})
    assert bad.json()["ok"] is False and "syntax error" in bad.json()["error"]
    assert "\n" not in bad.json()["error"]
    api.client.cookies.clear()
    anonymous = api.client.get("/console/subscriptions/check-filter",
                               params={"filter": "x"}, follow_redirects=False)
    assert anonymous.status_code == 303


def test_only_the_form_page_runs_a_script_by_nonce(api: Api) -> None:
    sub = api.subscription()
    login(api)
    for url in (f"/console/subscriptions/{sub.id}", "/console/subscriptions/new"):
        response = api.client.get(url)
        csp = response.headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
        assert nonce is not None and "unsafe-inline'; connect" not in csp
        assert f'<script nonce="{nonce.group(1)}">' in response.text
        assert "connect-src 'self'" in csp
    assert "script-src" not in api.client.get("/console/dashboard").headers[
        "content-security-policy"]


def test_deliveries_page_both_ways_with_a_total(api: Api) -> None:
    sub = api.subscription()
    ids = [api.delivery(sub, {"n": i}).id for i in range(120)]
    login(api)
    first = api.client.get("/console/deliveries").text
    assert "1&ndash;50 of 120" in first and 'rel="prev"' not in first
    older = re.search(r'href="(/console/deliveries\?q=&amp;before=[^"]+)" rel="next"', first)
    assert older is not None
    second = api.client.get(older.group(1).replace("&amp;", "&")).text
    assert "51&ndash;100 of 120" in second
    third_link = re.search(r'href="([^"]+)" rel="next"', second)
    assert third_link is not None
    third = api.client.get(third_link.group(1).replace("&amp;", "&")).text
    assert "101&ndash;120 of 120" in third and 'rel="next"' not in third
    back_link = re.search(r'href="([^"]+)" rel="prev"', third)
    assert back_link is not None
    back = api.client.get(back_link.group(1).replace("&amp;", "&")).text
    assert "51&ndash;100 of 120" in back

    def rows(html: str) -> list[str]:
        return re.findall(r'<a href="/console/deliveries/([0-9a-f-]{36})">', html)

    assert rows(back) == rows(second) and len(rows(back)) == 50
    assert set(rows(first)) | set(rows(second)) | set(rows(third)) == set(ids)
    # Subscription ids link to the subscription; uuids do not wrap.
    assert f'href="/console/subscriptions/{sub.id}"' in first
    assert 'class="mono uuid"' in first and "td.uuid { white-space: nowrap; }" in first.replace(
        ".nowrap, ", "")
    filtered = api.client.get("/console/deliveries", params={"q": "data.n:[0 TO 9]"}).text
    assert "1&ndash;10 of 10" in filtered


def test_no_replay_for_a_deleted_subscription(api: Api) -> None:
    sub = api.subscription()
    delivery = api.delivery(sub)
    api.app.store.set_delivery_status(delivery.id, "dead")
    login(api)
    assert "/replay" in api.client.get(f"/console/deliveries/{delivery.id}").text
    api.app.store.delete_subscription(sub.id)
    trace = api.client.get(f"/console/deliveries/{delivery.id}").text
    assert f'href="/console/deliveries/{delivery.id}/replay"' not in trace
    assert 'id="no-replay"' in trace
    confirm = api.client.get(f"/console/deliveries/{delivery.id}/replay").text
    assert 'id="confirm-replay"' not in confirm and "cannot be replayed" in confirm
    token = csrf(api, "/console/subscriptions")
    refused = api.client.post(f"/console/deliveries/{delivery.id}/replay", data={"csrf": token})
    assert refused.status_code == 409
    assert api.app.store.get_delivery(delivery.id).status == "dead"
    # The deleted subscription's page still opens, read-only.
    page = api.client.get(f"/console/subscriptions/{sub.id}")
    assert page.status_code == 200 and "deleted" in page.text and 'id="save"' not in page.text


def test_the_403_page_says_it_once_and_keeps_the_navigation(api: Api) -> None:
    login(api, "deliveries:read")
    response = api.client.get("/console/subscriptions")
    assert response.status_code == 403
    assert response.text.count("lacks the") == 1
    assert 'class="flash"' not in response.text
    assert '<nav>' in response.text and 'href="/console/deliveries"' in response.text
    assert "Log out" in response.text


def test_subscriptions_grid_shows_health(api: Api) -> None:
    from asyncevents.core.clock import utcnow
    from asyncevents.core.store import NewAttempt

    sub = api.subscription()
    for status, ok in (("delivered", True), ("dead", False), ("delivered", True),
                       ("delivered", True)):
        delivery = api.delivery(sub)
        api.app.store.record_attempt(delivery.id, NewAttempt(
            started_at=utcnow(), duration_ms=1.0, success=ok, status_code=200 if ok else 410,
            response="", error=None if ok else "HTTP 410 Gone", status=status))  # type: ignore[arg-type]
    login(api)
    grid = api.client.get("/console/subscriptions").text
    assert "75 %" in grid and "HTTP 410 Gone" in grid
    # The id shortened to fit the screen, whole in the link and its title.
    assert (f'<a href="/console/subscriptions/{sub.id}" title="{sub.id}">{sub.id[:8]}…</a>'
            in grid)
    page = api.client.get(f"/console/subscriptions/{sub.id}").text
    assert "75.0 %" in page and "HTTP 410 Gone" in page


def test_catalog_marks_deprecated_events(api: Api) -> None:
    catalog = api.app.catalog
    catalog.definitions["old.thing"] = EventDefinition(description="gone soon",
                                                       deprecated=True)
    catalog.definitions["new.thing"] = EventDefinition(description="fine")
    login(api)
    page = api.client.get("/console/events").text
    row = re.search(r"<tr>\s*<td class=\"mono\">old\.thing.*?</tr>", page, re.S)
    assert row is not None and 'class="badge">deprecated' in row.group(0)
    fine = re.search(r"<tr>\s*<td class=\"mono\">new\.thing.*?</tr>", page, re.S)
    assert fine is not None and "deprecated" not in fine.group(0)


def test_no_token_in_any_console_page_or_log(api: Api,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    marker = f"LEAKCHECK{uuid.uuid4().hex}"
    login(api)
    token = csrf(api, "/console/subscriptions/new")
    pages = [
        api.client.post("/console/subscriptions/new", data={
            **GOOD, "csrf": token, "token": f"tok-{marker}"}),
        api.client.post("/console/subscriptions/new", data={  # refused: not base64
            **GOOD, "csrf": token, "token": f"whsec_{marker}!!"}),
        api.client.post("/console/subscriptions/new", data={  # refused: the recipient
            **GOOD, "csrf": token, "token": f"tok-{marker}", "recipient": "http://10.0.0.1/"}),
    ]
    (sub,) = api.app.store.list_subscriptions()
    pages += [
        api.client.post(f"/console/subscriptions/{sub.id}", data={
            **GOOD, "csrf": token, "token": f"tok2-{marker}"}),
        api.client.post(f"/console/subscriptions/{sub.id}", data={
            **GOOD, "csrf": token, "token": f"tok3-{marker}", "filter": "data.a:("}),
        api.client.get("/console/subscriptions"),
        api.client.get(f"/console/subscriptions/{sub.id}"),
        api.client.get("/console/dashboard"),
    ]
    assert [p.status_code for p in pages] == [200, 422, 422, 200, 422, 200, 200, 200]
    assert api.app.store.get_subscription(sub.id).token == f"tok2-{marker}"
    logs = capsys.readouterr()
    for text in [*(p.text for p in pages), logs.out, logs.err]:
        assert marker not in text, text[:2000]
