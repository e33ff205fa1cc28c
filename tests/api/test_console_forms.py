"""Console forms show every refusal at once, each at its field (issue 23, item 15), and a sink
that does not sign needs no token, in the console and the REST API alike (item 14).

A refused form lists each problem above the form (its field's label linking to
the field) and repeats it next to the field, which is ``aria-invalid`` and
described by it; what was typed is kept, the token never; nothing is stored.
"""

from __future__ import annotations

import re

from tests.api.conftest import TOKEN, Api
from tests.api.helpers import GOOD, csrf, form_errors, login

BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/shop"


def _marked(html: str, field: str, element_id: str | None = None) -> str:
    """The message next to ``field``, after checking the field is marked invalid by it."""
    element_id = element_id or field
    tag = re.search(rf'<(?:input|select|textarea|fieldset)[^>]*id="{element_id}"[^>]*>', html)
    assert tag is not None, f"no field {element_id}"
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    assert f'aria-describedby="error-{field}"' in tag.group(0), tag.group(0)
    message = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', html)
    assert message is not None, f"no message next to {field}"
    return message.group(1)


def test_a_new_subscription_form_shows_every_refusal_at_once(api: Api) -> None:
    login(api)
    typed = {**GOOD, "csrf": csrf(api, "/console/subscriptions/new"),
             "recipient": "http://10.0.0.1/hook", "token": "   ", "filter": "data.total:(",
             "rate": "fast", "max_deaths": "-1", "headers": "no colon here",
             "ordering_key": "customer"}
    response = api.client.post("/console/subscriptions/new", data=typed)
    assert response.status_code == 422
    html = response.text
    errors = form_errors(html)
    assert set(errors) == {"recipient", "token", "filter", "rate", "retry_policy", "headers",
                           "ordering_key"}, errors
    assert "internal address" in errors["recipient"]
    assert "only whitespace" in errors["token"]
    assert "syntax error" in errors["filter"]
    assert "rate" in errors["rate"] and "max_deaths" in errors["retry_policy"]
    assert "Name: value" in errors["headers"] and "data." in errors["ordering_key"]
    assert "7 fields need a change" in html
    # Each named at its field too, the summary linking there.
    for field in ("recipient", "token", "filter", "rate", "headers", "ordering_key"):
        assert _marked(html, field) == errors[field]
    assert 'href="#retry_policy"' in html and 'href="#recipient"' in html
    assert re.search(r'<fieldset id="retry_policy" class="policy" aria-invalid="true"', html)
    # What was typed is kept, except the token.
    assert 'value="http://10.0.0.1/hook"' in html and 'value="data.total:("' in html
    assert 'value="fast"' in html and 'value="customer"' in html and "no colon here" in html
    assert 'name="token" value=""' in html
    assert api.app.store.list_subscriptions() == []


def test_schema_and_rule_refusals_are_shown_together(api: Api) -> None:
    login(api)
    response = api.client.post("/console/subscriptions/new", data={
        **GOOD, "csrf": csrf(api, "/console/subscriptions/new"), "recipient": "",
        "max_in_flight": "many", "filter": "data.id:(("})
    assert response.status_code == 422
    errors = form_errors(response.text)
    assert set(errors) == {"recipient", "max_in_flight", "filter"}, errors
    assert errors["recipient"].startswith("recipient: ")  # the field named in the line too
    assert api.app.store.list_subscriptions() == []


def test_the_edit_form_shows_every_refusal_and_changes_nothing(api: Api) -> None:
    sub = api.subscription(filter="data.id:1")
    before = api.app.store.get_subscription(sub.id)
    login(api)
    page = f"/console/subscriptions/{sub.id}"
    response = api.client.post(page, data={
        **GOOD, "csrf": csrf(api, page), "token": "whsec_not base64!",
        "recipient": "http://192.168.1.1/x", "filter": "data.id:((", "disable_after": "-3"})
    assert response.status_code == 422
    errors = form_errors(response.text)
    assert set(errors) == {"token", "recipient", "filter", "disable_after"}, errors
    assert "whsec_not" not in response.text  # neither the token nor its echo
    assert _marked(response.text, "disable_after") == errors["disable_after"]
    assert api.app.store.get_subscription(sub.id) == before


def test_the_rotation_form_names_both_of_its_fields(api: Api) -> None:
    sub = api.subscription()
    login(api)
    page = f"/console/subscriptions/{sub.id}"
    response = api.client.post(f"{page}/rotate-token", data={
        "csrf": csrf(api, page), "token": "   ", "grace": "a week"})
    assert response.status_code == 422
    errors = form_errors(response.text)
    assert set(errors) == {"new_token", "grace"}, errors
    assert "invalid grace" in _marked(response.text, "grace")
    assert _marked(response.text, "new_token") == errors["new_token"]
    # The edit form's own token field is not the one refused.
    assert not re.search(r'id="token"[^>]*aria-invalid', response.text)
    assert api.app.store.get_subscription(sub.id) == sub


def test_a_sink_that_does_not_sign_needs_no_token_in_the_console(api: Api) -> None:
    login(api)
    form = api.client.get("/console/subscriptions/new").text
    assert not re.search(r'id="token"[^>]*required', form)  # the sink decides, not the page
    done = api.client.post("/console/subscriptions/new", follow_redirects=False, data={
        **GOOD, "csrf": csrf(api, "/console/subscriptions/new"), "sink": "eventbridge",
        "recipient": BUS, "token": ""})
    assert done.status_code == 303, done.text
    (sub,) = api.app.store.list_subscriptions()
    assert sub.sink == "eventbridge" and sub.token == ""
    refused = api.client.post("/console/subscriptions/new", data={
        **GOOD, "csrf": csrf(api, "/console/subscriptions/new"), "token": ""})
    assert refused.status_code == 422
    assert "the http sink signs every delivery" in form_errors(refused.text)["token"]


def test_a_sink_that_does_not_sign_needs_no_token_over_rest(api: Api) -> None:
    created = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "shop.order.created", "recipient": BUS, "sink": "eventbridge"})
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == []
    refused = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "verification_token"
    assert "signs every delivery" in refused.json()["detail"]
    # A token given to a sink that does not sign is kept, and said to be unused.
    kept = api.client.post("/v1/subscriptions", headers=api.auth(), json={
        "event_name": "shop.order.created", "recipient": BUS, "sink": "eventbridge",
        "verification_token": TOKEN})
    assert kept.status_code == 201
    assert any("does not sign" in w for w in kept.json()["warnings"])
    assert TOKEN not in kept.text


def test_each_shipped_sink_says_whether_it_signs(api: Api) -> None:
    sinks = api.app.plugins.sinks()
    assert sinks["http"].signs is True
    assert sinks["eventbridge"].signs is False and sinks["python"].signs is False

    class Unsaid:  # a plugin's sink written before the flag: taken to sign
        name = "unsaid"

    from asyncevents.core.sink import sink_signs

    assert sink_signs(Unsaid) is True
