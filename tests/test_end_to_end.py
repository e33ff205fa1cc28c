"""publish → fan-out → signed HTTP delivery, over each real transport."""

from __future__ import annotations

import base64
from typing import Any

from pytest_httpserver import HTTPServer
from standardwebhooks.webhooks import Webhook

from asyncevents.core.app import App
from asyncevents.core.events.patterns import matches
from tests.helpers import Recorder, drain

TOKEN = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_events_fan_out_to_every_matching_subscription(
    transport_settings: Any, httpserver: HTTPServer
) -> None:
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    patterns = {"/exact": "shop.order.created", "/wild": "shop.order.*", "/all": "*",
                "/other": "crm.*"}
    subs = {path: app.subscribe(pattern, recorder.route(path), token=TOKEN)
            for path, pattern in patterns.items()}
    names = ["shop.order.created", "shop.order.paid", "misc.thing"] * 3
    events = {app.publish(name, {"n": i, "name": name}): name for i, name in enumerate(names)}

    report = drain(app)

    expected = {(event_id, path) for event_id, name in events.items()
                for path, pattern in patterns.items() if matches(pattern, name)}
    received = {(hit.json["id"], hit.path) for hit in recorder.hits}
    assert received == expected
    assert len(recorder.hits) == len(expected)  # exactly once each: no duplicate
    assert report.failed == 0
    webhook = Webhook(TOKEN)
    for hit in recorder.hits:
        webhook.verify(hit.body, hit.headers)  # raises when the signature is wrong
        document = hit.json
        assert document["specversion"] == "1.0"
        assert document["type"] == events[document["id"]]
        assert document["data"]["name"] == document["type"]
    for path, sub in subs.items():
        hits = recorder.on(path)
        for hit in hits:
            delivery = app.store.get_delivery(hit.headers["webhook-id"])
            assert delivery.subscription_id == sub.id
            assert delivery.status == "delivered" and delivery.attempts == 1
            (attempt,) = app.store.list_attempts(delivery.id)
            assert attempt.success and attempt.status_code == 200
    app.close()


def test_raw_token_signature_verifies(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/raw"), token="plain-secret")
    app.publish("any.event", {"x": 1})
    drain(app)
    (hit,) = recorder.hits
    # A token without whsec_ is the raw key: standardwebhooks takes it as bytes.
    Webhook(b"plain-secret").verify(hit.body, hit.headers)
    app.close()


def test_publish_many(transport_settings: Any, httpserver: HTTPServer) -> None:
    app = App(transport_settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/many"), token="t")
    ids = app.publish_many([("bulk.event", {"n": n}) for n in range(50)])
    assert len(set(ids)) == 50
    drain(app)
    assert sorted(hit.json["id"] for hit in recorder.hits) == sorted(ids)
    assert sorted(hit.json["data"]["n"] for hit in recorder.hits) == list(range(50))
    app.close()


def test_publish_many_checks_everything_first(make_settings: Any) -> None:
    import pytest

    from asyncevents.errors import InvalidPayload

    app = App(make_settings(transport_url="memory://"))
    with pytest.raises(InvalidPayload):
        app.publish_many([("ok.event", {"n": 1}), ("bad.event", [1, 2])])
    assert app.transport.connect().SimpleQueue(f"{app.settings.queue_prefix}.trigger").qsize() == 0
    app.close()
