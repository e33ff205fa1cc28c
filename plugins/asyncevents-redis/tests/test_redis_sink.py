"""The Redis Streams sink against the real Redis, with asyncevents' sink contract kit."""

from __future__ import annotations

import json
import socket

import pytest
import redis
from asyncevents_redis import RedisSettings, RedisStreamSink, stream_fields

from asyncevents import App, ConfigError, DeliveryRequest, InvalidRecipient, Settings
from asyncevents.core.plugins import Plugins
from asyncevents.core.worker.worker import WorkerLimits
from asyncevents.testing import FailureCase, SinkContract, make_request


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def entries(client: redis.Redis, stream: str) -> dict[str, dict[str, str]]:
    """The stream's entries by CloudEvent id."""
    found: list[tuple[str, dict[str, str]]] = client.xrange(stream)  # type: ignore[assignment]
    return {fields["id"]: fields for _, fields in found}


def test_sink_contract(settings: Settings, client: redis.Redis, stream: str) -> None:
    def received(request: DeliveryRequest) -> None:
        fields = entries(client, stream).get(request.event_id)
        if fields != stream_fields(request):
            raise AssertionError(f"event {request.event_id} is not in {stream}: {fields}")

    wrong_type = f"{stream}:a-string"
    client.set(wrong_type, "not a stream")
    port = closed_port()
    try:
        SinkContract(
            factory=RedisStreamSink,
            settings=settings,
            good_recipient=stream,
            bad_recipients=["", "has space", "tab\there", "x" * 1025],
            received=received,
            failures=[
                FailureCase("the key holds another type", retryable=False, recipient=wrong_type),
                FailureCase("Redis cannot be reached", retryable=True, recipient=stream,
                            sink=lambda: RedisStreamSink(settings, RedisSettings(
                                url=f"redis://127.0.0.1:{port}/0", timeout=1))),
            ],
        ).check_all()
    finally:
        client.delete(wrong_type)


def test_fields(settings: Settings, client: redis.Redis, stream: str) -> None:
    sink = RedisStreamSink(settings)
    request = make_request(recipient=stream, event_name="sales.order.paid")
    result = sink.deliver(request)
    assert result.success
    ((entry_id, fields),) = client.xrange(stream)  # type: ignore[misc]
    assert result.response == entry_id
    assert fields == {
        "id": request.event_id, "type": "sales.order.paid", "source": "asyncevents",
        "time": "2026-02-01T12:00:00Z", "datacontenttype": "application/json",
        "data": json.dumps(request.payload, separators=(",", ":"), ensure_ascii=False),
        "delivery_id": request.delivery_id,
    }
    assert json.loads(fields["data"]) == request.payload
    sink.close()


def test_maxlen_trims_the_stream(settings: Settings, client: redis.Redis, stream: str) -> None:
    sink = RedisStreamSink(settings, RedisSettings(maxlen=10))
    for _ in range(250):
        assert sink.deliver(make_request(recipient=stream)).success
    # MAXLEN ~ trims whole stream nodes (100 entries by default), never below the limit.
    assert 10 <= client.xlen(stream) < 250
    sink.close()


def test_maxlen_zero_keeps_everything(settings: Settings, client: redis.Redis,
                                      stream: str) -> None:
    sink = RedisStreamSink(settings, RedisSettings(maxlen=0))
    for _ in range(120):
        assert sink.deliver(make_request(recipient=stream)).success
    assert client.xlen(stream) == 120
    sink.close()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                       settings: Settings) -> None:
    monkeypatch.setenv("ASYNCEVENTS_REDIS_MAXLEN", "500")
    assert RedisStreamSink(settings).options.maxlen == 500
    monkeypatch.setenv("ASYNCEVENTS_REDIS_MAXLEN", "-1")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_REDIS_MAXLEN"):
        RedisStreamSink(settings)
    monkeypatch.setenv("ASYNCEVENTS_REDIS_MAXLEN", "5")
    monkeypatch.setenv("ASYNCEVENTS_REDIS_URL", "nonsense://x")
    with pytest.raises(ConfigError, match="ASYNCEVENTS_REDIS_URL"):
        RedisStreamSink(settings)


def test_the_password_never_shows(settings: Settings, stream: str) -> None:
    port = closed_port()
    sink = RedisStreamSink(settings, RedisSettings(url=f"redis://:s3cr%40t@127.0.0.1:{port}/0",
                                                   timeout=1))
    result = sink.deliver(make_request(recipient=stream))
    assert not result.success and result.retryable
    assert "s3cr" not in (result.error or "")
    sink.close()


def test_validate_recipient(settings: Settings) -> None:
    sink = RedisStreamSink(settings)
    sink.validate_recipient("orders:stream")
    with pytest.raises(InvalidRecipient):
        sink.validate_recipient("two words")
    sink.close()


def test_installed_through_the_entry_point() -> None:
    info = Plugins.load().sinks()["redis"]
    assert info.distribution == "asyncevents-redis" and info.factory is RedisStreamSink


def test_end_to_end_through_the_worker(settings: Settings, client: redis.Redis,
                                       stream: str) -> None:
    app = App(settings)
    app.subscribe("sales.*", stream, sink="redis", token="t")
    ids = {app.publish("sales.order.created", {"n": n}) for n in range(3)}
    app.run_worker(WorkerLimits(concurrency=2, max_idle_time=1, time_limit=30))
    got = entries(client, stream)
    assert set(got) == ids
    assert {json.loads(f["data"])["n"] for f in got.values()} == {0, 1, 2}
    app.close()
