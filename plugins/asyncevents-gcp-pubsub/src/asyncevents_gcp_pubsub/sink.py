"""The Pub/Sub sink: one message per delivery, the CloudEvent as its data.

Publishing goes through google-cloud-pubsub's batching ``PublisherClient``,
built on first use (so subscribing needs no credentials) and shared by the
worker's threads; each delivery waits for its own message id.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any, ClassVar

import grpc
from google.api_core import exceptions as api
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.publisher import exceptions as publisher
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from asyncevents import DeliveryRequest, DeliveryResult, InvalidRecipient, Settings, cloudevent
from asyncevents_gcp_pubsub.message import OrderingKeyError, attributes, ordering_key
from asyncevents_gcp_pubsub.recipient import parse_recipient
from asyncevents_gcp_pubsub.settings import PubSubSettings

__all__ = ["PubSubSink", "classify"]

# Worth another try: throttling and quota, an unavailable or overloaded service, timeouts.
_RETRYABLE = (api.TooManyRequests, api.ResourceExhausted, api.ServiceUnavailable,
              api.InternalServerError, api.GatewayTimeout, api.DeadlineExceeded, api.Aborted,
              api.Cancelled, api.Unknown, api.RetryError)


class PubSubSink:
    """Publishes events to Google Cloud Pub/Sub topics."""

    name: ClassVar[str] = "pubsub"

    def __init__(self, settings: Settings, options: PubSubSettings | None = None) -> None:
        self.options = options if options is not None else PubSubSettings.from_env()
        self._client: Any = None
        self._lock = threading.Lock()

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is ``projects/P/topics/T``."""
        parse_recipient(recipient)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Publish the CloudEvent to the topic; succeed once Pub/Sub returns its message id."""
        try:
            parse_recipient(request.recipient)
            key = ordering_key(request)
        except (InvalidRecipient, OrderingKeyError) as exc:
            return DeliveryResult.failed(f"invalid subscription: {exc}", retryable=False)
        topic = request.recipient.strip()
        data = json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False)
        client: Any = None
        try:
            client = self.client()
            future = client.publish(topic, data.encode(), ordering_key=key, **attributes(request))
            message_id = future.result(timeout=self.options.timeout + 1)
        except Exception as exc:
            if key and client is not None:
                # A failure pauses the ordering key; the core's retry must find it open.
                client.resume_publish(topic, key)
            message, retryable = classify(exc, self.options.timeout)
            return DeliveryResult.failed(message.replace(request.token, "***"),
                                         retryable=retryable)
        return DeliveryResult.ok(response=json.dumps({"message_id": message_id}))

    def client(self) -> Any:
        """The shared ``PublisherClient``, built on first use (credentials: Google's chain)."""
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def close(self) -> None:
        """Send what is batched and stop the client.

        ``stop()`` commits in the background: the gRPC channel is left to close
        with the client, as closing it now could cut a commit in flight.
        """
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.stop()

    def _build(self) -> Any:
        timeout = self.options.timeout
        retry = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout,
                      predicate=if_exception_type(api.ServiceUnavailable, api.InternalServerError,
                                                  api.Aborted, api.Unknown))
        options = pubsub_v1.types.PublisherOptions(
            enable_message_ordering=True, retry=retry, timeout=timeout)
        kwargs: dict[str, Any] = {}
        if self.options.emulator_host:
            # What google-cloud-pubsub does for PUBSUB_EMULATOR_HOST, from our settings.
            channel = grpc.insecure_channel(self.options.emulator_host)
            kwargs["transport"] = PublisherGrpcTransport(channel=channel,
                                                         host=self.options.emulator_host)
            kwargs["client_options"] = {"api_endpoint": self.options.emulator_host}
        elif self.options.endpoint:
            kwargs["client_options"] = {"api_endpoint": self.options.endpoint}
        return pubsub_v1.PublisherClient(publisher_options=options, **kwargs)


def classify(exc: BaseException, timeout: float) -> tuple[str, bool]:
    """A failure's message and whether another attempt may succeed."""
    if isinstance(exc, publisher.MessageTooLargeError):
        return f"the message is too large for Pub/Sub: {exc}", False
    if isinstance(exc, publisher.PublishToPausedOrderingKeyException):
        return "an earlier message with the same ordering key failed; resumed for the retry", True
    if isinstance(exc, auth.DefaultCredentialsError):
        return "no Google credentials found (Application Default Credentials)", True
    if isinstance(exc, auth.RefreshError):
        return "Google refused to refresh the credentials", False
    if isinstance(exc, auth.TransportError):
        return f"cannot reach Google's credential service: {type(exc).__name__}", True
    if isinstance(exc, api.GoogleAPICallError):
        code = exc.grpc_status_code.name if exc.grpc_status_code else exc.code
        retryable = isinstance(exc, _RETRYABLE)
        return f"Pub/Sub refused: {code}: {exc.message}", retryable
    if isinstance(exc, api.RetryError):
        cause = exc.cause
        return f"Pub/Sub kept failing for {timeout:g}s: {type(cause).__name__}: {cause}", True
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError)):
        return f"no answer from Pub/Sub within {timeout:g}s", True
    return f"{type(exc).__name__}: {exc}", True
