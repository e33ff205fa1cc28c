"""The EventBridge sink's answers to what only botocore's Stubber can make AWS say."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.stub import Stubber

from asyncevents.core.settings import Settings
from asyncevents.sinks.eventbridge import EventBridgeSink
from asyncevents.testing import make_request
from tests.sinks.aws import SECRET, fake_aws_env, options


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(http_connect_timeout=1.0, http_timeout=2.0)


@pytest.mark.parametrize(("code", "status", "retryable"), [
    ("ThrottlingException", 400, True),
    ("InternalFailure", 500, True),
    ("ServiceUnavailable", 503, True),
    ("AccessDeniedException", 400, False),
    ("ResourceNotFoundException", 400, False),
    ("ValidationException", 400, False),
])
def test_call_errors(settings: Settings, code: str, status: int, retryable: bool) -> None:
    sink = EventBridgeSink(settings, options(batch_window_ms=0))
    with Stubber(sink.client()) as stub:
        stub.add_client_error("put_events", service_error_code=code, http_status_code=status,
                              service_message=f"no luck, {SECRET}")
        result = sink.deliver(make_request(recipient="orders"))
    assert not result.success and result.retryable is retryable
    assert code in (result.error or "") and result.status_code == status
    assert SECRET not in (result.error or "")


def test_partial_failure_fails_only_the_failed_entries(settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(batch_window_ms=300))
    answers = [{"EventId": "ok-1"},
               {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
               {"ErrorCode": "InvalidArgument", "ErrorMessage": "Parameter Detail is not valid"},
               {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"}]
    order: list[str] = []
    client = sink.client()
    client.meta.events.register(
        "provide-client-params.events.PutEvents",
        lambda params, **_: order.extend(e["DetailType"] for e in params["Entries"]))
    requests = [make_request(recipient="orders", event_name=f"e.{i}") for i in range(4)]
    with Stubber(client) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 3, "Entries": answers})
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(zip([r.event_name for r in requests],
                               pool.map(sink.deliver, requests), strict=True))
        stub.assert_no_pending_responses()
    assert sorted(order) == [r.event_name for r in requests]  # one call carried all four
    outcome = {name: answers[order.index(name)] for name in order}
    for name, result in results.items():
        code = outcome[name].get("ErrorCode")
        if code is None:
            assert result.success and json.loads(result.response) == {"EventId": "ok-1"}
        else:
            assert not result.success and code in (result.error or "")
            assert result.retryable is (code in ("ThrottlingException", "InternalFailure"))
            assert json.loads(result.response)["ErrorCode"] == code


def test_a_short_answer_is_retryable(settings: Settings) -> None:
    sink = EventBridgeSink(settings, options(batch_window_ms=0))
    with Stubber(sink.client()) as stub:
        stub.add_response("put_events", {"FailedEntryCount": 0, "Entries": []})
        result = sink.deliver(make_request(recipient="orders"))
    assert not result.success and result.retryable
    assert "answered 0 entries for 1" in (result.error or "")


def test_no_credentials_is_retryable_and_says_why(settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    sink = EventBridgeSink(settings, options(batch_window_ms=0))
    result = sink.deliver(make_request(recipient="orders"))
    assert not result.success and result.retryable
    assert "no AWS credentials" in (result.error or "")
