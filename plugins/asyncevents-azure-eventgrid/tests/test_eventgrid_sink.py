"""The Event Grid sink against a local HTTPS stand-in, with asyncevents' sink contract kit."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from asyncevents_azure_eventgrid import EventGridSettings, EventGridSink, classify, parse_recipient
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from eventgrid_server import TopicServer

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings, cloudevent
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import TEST_TOKEN, FailureCase, SinkContract, make_request

AZURE = EventGridSettings().hosts
SCOPE = "https://eventgrid.azure.net/.default"


class FakeEntra:
    """A TokenCredential handing out the stand-in's bearer token, recording the scopes asked."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def check_arrived(topic: TopicServer, request: DeliveryRequest) -> None:
    """``request`` reached the topic as the request's CloudEvent, with the key header."""
    with topic.lock:
        found = [(r, e) for r in topic.received for e in r.events if e["id"] == request.event_id]
    if not found:
        raise AssertionError(f"event {request.event_id} did not reach the topic")
    (received, event), *_ = found
    if event != cloudevent(request):
        raise AssertionError(f"the event is not the request's CloudEvent: {event}")
    if received.headers.get("aeg-sas-key") != request.token:
        raise AssertionError("the access key header is missing")


@pytest.mark.parametrize("recipient", [
    "https://orders.westeurope-1.eventgrid.azure.net/api/events",
    "https://orders.westeurope-1.eventgrid.azure.net/api/events/",
    "https://shop.usgovvirginia-1.eventgrid.azure.us/api/events",
])
def test_recipients(recipient: str) -> None:
    assert parse_recipient(recipient, AZURE) == recipient


@pytest.mark.parametrize("recipient", [
    "", "orders", "http://orders.westeurope-1.eventgrid.azure.net/api/events",  # https only
    "https://orders.westeurope-1.eventgrid.azure.net/",  # the path ends in /api/events
    "https://example.com/api/events",  # not an Event Grid host (see ALLOWED_HOSTS)
    "https://eventgrid.azure.net.evil.example/api/events",
    "https://key@orders.westeurope-1.eventgrid.azure.net/api/events",
    "https://orders.westeurope-1.eventgrid.azure.net/api/events?api-version=2018-01-01",
    "https://orders.westeurope-1.eventgrid.azure.net:99999/api/events",
])
def test_bad_recipients(recipient: str) -> None:
    with pytest.raises(InvalidRecipient):
        parse_recipient(recipient, AZURE)


def test_allowed_hosts_by_name_or_suffix() -> None:
    settings = EventGridSettings(allowed_hosts="events.internal, .grid.example")
    assert settings.hosts == ("events.internal", ".grid.example")
    parse_recipient("https://events.internal/api/events", settings.hosts)
    parse_recipient("https://a.grid.example/api/events", settings.hosts)
    with pytest.raises(InvalidRecipient):
        parse_recipient("https://grid.example/api/events", settings.hosts)


@pytest.mark.parametrize(("exc", "retryable"), [
    (ServiceRequestError("Connection refused"), True),
    (ServiceResponseError("Read timed out"), True),
    (ClientAuthenticationError("no managed identity endpoint"), True),  # from the credential
    (ServiceRequestError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False),
    (ValueError("bad event"), False),
])
def test_classification(exc: Exception, retryable: bool) -> None:
    result = classify(exc)
    assert not result.success and result.retryable is retryable and result.error


def test_sink_contract(settings: Settings, topic: TopicServer, tmp_path: Any) -> None:
    SinkContract(
        factory=EventGridSink,
        settings=settings,
        good_recipient=topic.endpoint(),
        bad_recipients=["", "orders", topic.endpoint().replace("https:", "http:"),
                        "https://example.com/api/events"],
        received=lambda request: check_arrived(topic, request),
        failures=[
            FailureCase("the key is refused", retryable=False, recipient=topic.endpoint(),
                        request={"token": "not-the-key"}),
            FailureCase("no such topic", retryable=False, recipient=topic.endpoint("404")),
            FailureCase("forbidden", retryable=False, recipient=topic.endpoint("403")),
            FailureCase("the event is too large", retryable=False,
                        recipient=topic.endpoint("413")),
            FailureCase("throttled", retryable=True, recipient=topic.endpoint("429")),
            FailureCase("Event Grid is unavailable", retryable=True,
                        recipient=topic.endpoint("503")),
            FailureCase("the certificate is not trusted", retryable=False,
                        recipient=topic.endpoint(),
                        sink=lambda: EventGridSink(settings, EventGridSettings(
                            allowed_hosts="127.0.0.1", ca_file=None))),  # the system CAs only
            FailureCase("the endpoint cannot be reached", retryable=True,
                        recipient="https://127.0.0.1:9/api/events"),
        ],
    ).check_all()


def test_private_endpoints_are_refused_unless_allowed(settings: Settings,
                                                      topic: TopicServer) -> None:
    closed = settings.model_copy(update={"allowed_networks": []})
    sink = EventGridSink(closed, EventGridSettings(allowed_hosts="127.0.0.1,10.0.0.1,localhost,"
                                                                 "169.254.169.254",
                                                   ca_file=topic.cert))
    for host in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "localhost"):
        with pytest.raises(InvalidRecipient, match="ASYNCEVENTS_ALLOWED_NETWORKS"):
            sink.validate_recipient(f"https://{host}/api/events")
    refused = sink.deliver(make_request(recipient=topic.endpoint()))
    sink.close()
    assert not refused.success and not refused.retryable
    assert "recipient address refused" in (refused.error or "")
    assert topic.received == []  # nothing reached the endpoint


def test_connects_to_the_checked_address_not_a_second_lookup(
        settings: Settings, topic: TopicServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name answers loopback (allowed) to the guard's lookup, then a private
    # address: a client resolving the name again would go there (DNS rebinding). TLS
    # still checks the certificate against the name (the stand-in's is for localhost).
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "localhost":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    sink = EventGridSink(settings, EventGridSettings(allowed_hosts="localhost",
                                                     ca_file=topic.cert, connect_timeout=2))
    request = make_request(recipient=topic.endpoint().replace("127.0.0.1", "localhost"))
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    assert lookups == ["localhost"]
    check_arrived(topic, request)


def test_the_wire_format(settings: Settings, topic: TopicServer) -> None:
    sink = EventGridSink(settings)
    request = make_request(recipient=topic.endpoint(), event_name="sales.order.paid")
    result = sink.deliver(request)
    sink.close()
    assert result.success and result.status_code == 200
    (received,) = topic.received
    assert received.path == "/api/events?api-version=2018-01-01"
    assert received.headers["Content-Type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert received.headers["aeg-sas-key"] == TEST_TOKEN
    assert "Authorization" not in received.headers
    assert received.events == [{
        "specversion": "1.0", "id": request.event_id, "source": "asyncevents",
        "type": "sales.order.paid", "time": "2026-02-01T12:00:00Z",
        "datacontenttype": "application/json", "data": request.payload,
    }]


def test_retry_after_is_honoured(settings: Settings, topic: TopicServer) -> None:
    sink = EventGridSink(settings)
    result = sink.deliver(make_request(recipient=topic.endpoint("429")))
    sink.close()
    assert (result.status_code, result.retryable, result.retry_after) == (429, True, 7.0)


@pytest.mark.parametrize("how", ["setting", "empty token"])
def test_entra_id(settings: Settings, topic: TopicServer, how: str) -> None:
    entra = FakeEntra(topic.bearer)
    options = EventGridSettings(auth="entra" if how == "setting" else "key")
    sink = EventGridSink(settings, options, entra_credential=entra)
    request = make_request(recipient=topic.endpoint(), token=TEST_TOKEN if how == "setting" else "")
    result = sink.deliver(request)
    sink.close()
    assert result.success, result.error
    (received,) = topic.received
    assert received.headers["Authorization"] == f"Bearer {topic.bearer}"
    assert "aeg-sas-key" not in received.headers
    assert entra.scopes == [SCOPE]


def test_entra_id_refused(settings: Settings, topic: TopicServer) -> None:
    sink = EventGridSink(settings, EventGridSettings(auth="entra"),
                         entra_credential=FakeEntra("someone-else"))
    result = sink.deliver(make_request(recipient=topic.endpoint()))
    sink.close()
    assert not result.success and not result.retryable and result.status_code == 401


def test_entra_id_builds_the_default_credential(settings: Settings) -> None:
    pytest.importorskip("azure.identity", reason="the [entra] extra is not installed")
    from azure.identity import DefaultAzureCredential
    sink = EventGridSink(settings, EventGridSettings(auth="entra"))
    assert isinstance(sink._entra_credential(), DefaultAzureCredential)  # no token asked yet
    sink.close()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_EVENTGRID_AUTH", "entra")
    assert EventGridSink(settings).options.auth == "entra"
    monkeypatch.setenv("ASYNCEVENTS_EVENTGRID_AUTH", "password")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_EVENTGRID_AUTH"):
        EventGridSink(settings)


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["eventgrid"]
    assert info.distribution == "asyncevents-azure-eventgrid" and info.factory is EventGridSink


def test_end_to_end_through_the_worker(settings: Settings, topic: TopicServer) -> None:
    app = App(settings)
    app.subscribe("sales.*", topic.endpoint(), sink="eventgrid", token=TEST_TOKEN)
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    events = topic.events()
    assert {e["id"] for e in events} == ids
    assert {e["data"]["n"] for e in events} == {0, 1, 2}
    assert {e["type"] for e in events} == {"sales.order.created"}
    assert all(r.headers["aeg-sas-key"] == TEST_TOKEN for r in topic.received)
    app.close()
