"""The SQS sink: one ``SendMessage`` per delivery, the CloudEvent as the message body."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents import (
    ConfigError,
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    cloudevent,
)

__all__ = ["Queue", "SqsSettings", "SqsSink", "message_size", "parse_recipient"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}(?:\.fifo)?$")
_URL = re.compile(r"^https?://(?P<host>[^/?#\s]+)/(?P<account>[0-9]{12})/(?P<name>[^/?#\s]+)$")
_AWS_HOST = re.compile(r"^(?:sqs\.(?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com")
_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+):"
                  r"(?P<account>[0-9]{12}):(?P<name>.+)$")
# MessageGroupId: up to 128 alphanumeric or punctuation characters.
_GROUP_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_PERMANENT = frozenset({
    "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "InvalidParameterValue",
    "InvalidMessageContents", "UnsupportedOperation", "AccessDenied", "AccessDeniedException",
    "KmsAccessDenied", "KmsDisabled", "KmsNotFound", "KmsInvalidState", "KmsInvalidKeyUsage",
    "InvalidAddress", "InvalidSecurity", "MissingParameter", "ValidationError",
})
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")


class SqsSettings(BaseSettings):
    """The SQS sink's settings, from ``ASYNCEVENTS_SQS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_SQS_", extra="ignore")

    region: str | None = Field(default=None, description="region when the recipient has none")
    endpoint_url: str | None = Field(default=None, description="another endpoint (tests, VPC)")
    max_message_bytes: int = Field(default=1_048_576, gt=0, description="body + attributes")

    @classmethod
    def from_env(cls) -> SqsSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(f"invalid setting ASYNCEVENTS_SQS_{where}: {first['msg']}") from None


@dataclass(frozen=True)
class Queue:
    """A recipient read: the queue's name, and its URL, account and region when known."""

    name: str
    url: str | None = None
    account: str | None = None
    region: str | None = None

    @property
    def fifo(self) -> bool:
        """Whether this is a FIFO queue (its name ends with ``.fifo``)."""
        return self.name.endswith(".fifo")


def parse_recipient(recipient: str) -> Queue:
    """Read a queue URL, queue ARN or queue name; ``InvalidRecipient`` if it is none of them."""
    text = recipient.strip()
    if match := _URL.match(text):
        host = _AWS_HOST.match(match["host"])
        region = (host["a"] or host["b"]) if host else None
        queue = Queue(match["name"], text, match["account"], region)
    elif match := _ARN.match(text):
        queue = Queue(match["name"], None, match["account"], match["region"])
    elif text.startswith(("arn:", "http:", "https:")):
        raise InvalidRecipient("expected a queue URL https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"
                               " or an ARN arn:aws:sqs:REGION:ACCOUNT:NAME")
    else:
        queue = Queue(text)
    if not _NAME.match(queue.name):
        raise InvalidRecipient("an SQS queue name has 1-80 letters, digits, - or _ "
                               "(a FIFO queue's ends with .fifo)")
    return queue


def message_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """A message's size as SQS counts it: the body plus each attribute's name, type and value."""
    size = len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute.get("StringValue", "").encode("utf-8"))
    return size


class SqsSink:
    """Delivers events to Amazon SQS queues, standard or FIFO."""

    name: ClassVar[str] = "sqs"

    def __init__(self, settings: Settings, options: SqsSettings | None = None) -> None:
        self.options = options if options is not None else SqsSettings.from_env()
        self._session = boto3.session.Session()
        self._config = Config(
            connect_timeout=settings.http_connect_timeout, read_timeout=settings.http_timeout,
            retries={"mode": "standard", "total_max_attempts": 2}, max_pool_connections=20,
        )
        self._clients: dict[str | None, Any] = {}
        self._urls: dict[tuple[str | None, str, str | None], str] = {}
        self._lock = threading.Lock()

    def client(self, region: str | None = None) -> Any:
        """The shared boto3 ``sqs`` client for ``region`` (``None``: the settings' or boto3's)."""
        region = region or self.options.region
        with self._lock:  # a boto3 Session is not thread-safe; its clients are
            if region not in self._clients:
                self._clients[region] = self._session.client(
                    "sqs", region_name=region, endpoint_url=self.options.endpoint_url,
                    config=self._config)
            return self._clients[region]

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` reads as a queue in a known region."""
        queue = parse_recipient(recipient)
        if not (queue.url or queue.region or self.options.region or self._session.region_name):
            raise InvalidRecipient("no AWS region for this queue: subscribe its URL or ARN, "
                                   "or set ASYNCEVENTS_SQS_REGION (or AWS_REGION)")

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Send the CloudEvent to the queue; classify what SQS answers."""
        try:
            queue = parse_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        body = json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False)
        attributes = {
            "event_name": {"DataType": "String", "StringValue": request.event_name},
            "delivery_id": {"DataType": "String", "StringValue": request.delivery_id},
        }
        size, limit = message_size(body, attributes), self.options.max_message_bytes
        if size > limit:
            return DeliveryResult.failed(
                f"message too large for SQS: {size:,} bytes, over the limit of {limit:,} "
                "(ASYNCEVENTS_SQS_MAX_MESSAGE_BYTES)", retryable=False)
        params: dict[str, Any] = {"MessageBody": body, "MessageAttributes": attributes}
        if queue.fifo:
            group = str(request.metadata.get("message_group_id") or request.event_name)
            if not _GROUP_ID.match(group):
                return DeliveryResult.failed(
                    "invalid FIFO message group id (1-128 letters, digits or punctuation); "
                    "set the subscription's metadata message_group_id", retryable=False)
            params["MessageGroupId"] = group
            # The same on every attempt: SQS drops a copy sent again within 5 minutes.
            params["MessageDeduplicationId"] = request.delivery_id
        region = queue.region or self.options.region
        try:
            url = self._queue_url(queue, region)
            answer = self.client(region).send_message(QueueUrl=url, **params)
        except Exception as exc:
            self._forget(queue, region)
            return self._failure(exc)
        return DeliveryResult.ok(200, json.dumps({"MessageId": answer.get("MessageId")}))

    def close(self) -> None:
        """Close every client's connection pool."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _queue_url(self, queue: Queue, region: str | None) -> str:
        if queue.url:
            return queue.url
        key = (region, queue.name, queue.account)
        with self._lock:
            url = self._urls.get(key)
        if url is None:
            lookup = {"QueueName": queue.name}
            if queue.account:
                lookup["QueueOwnerAWSAccountId"] = queue.account
            url = str(self.client(region).get_queue_url(**lookup)["QueueUrl"])
            with self._lock:
                self._urls[key] = url
        return url

    def _forget(self, queue: Queue, region: str | None) -> None:
        # A queue deleted and created again may get another URL: look it up next time.
        with self._lock:
            self._urls.pop((region, queue.name, queue.account), None)

    def _failure(self, exc: Exception) -> DeliveryResult:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            status = status if isinstance(status, int) else None
            retryable = code not in _PERMANENT and (
                status is None or status >= 500 or status == 429 or "Throttl" in code
                or code in ("RequestThrottled", "KmsThrottled", "ExpiredToken",
                            "ExpiredTokenException", "RequestExpired"))
            message = self._redact(str(error.get("Message") or ""))
            return DeliveryResult.failed(
                f"SQS refused: {code}" + (f": {message}" if message else ""),
                retryable=retryable, status_code=status)
        if isinstance(exc, NoCredentialsError):
            return DeliveryResult.failed("no AWS credentials found (boto3's default chain)")
        # Connection refused, timeouts, closed connections: worth another try.
        return DeliveryResult.failed(f"{type(exc).__name__}: {self._redact(str(exc))}")

    def _redact(self, text: str) -> str:
        try:
            credentials = self._session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials else None
        except Exception:
            frozen = None
        if frozen is not None:
            for secret in (frozen.secret_key, frozen.token):
                if secret:
                    text = text.replace(secret, "***")
        return _KEY_ID.sub("***", text)
