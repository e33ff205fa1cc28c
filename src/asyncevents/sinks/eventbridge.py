"""The Amazon EventBridge sink (``pip install 'asyncevents[aws]'``).

Each delivery becomes one ``PutEvents`` entry on the subscribed event bus:
``Source`` is a setting (default ``asyncevents``), ``DetailType`` the event
name, ``Detail`` the CloudEvents 1.0 document and ``Time`` the publish time.
Deliveries to the same bus that arrive together (the worker's threads) share
one call of up to 10 entries; the answer is read entry by entry, so only the
entries that failed are retried, and only when their ``ErrorCode`` is
``ThrottlingException`` or ``InternalFailure``.

The recipient is an event bus name, an event bus ARN
(``arn:aws:events:REGION:ACCOUNT:event-bus/NAME``) or, as Magento's module
wrote it, a rule ARN (``…:rule/NAME`` for the default bus,
``…:rule/BUS/NAME`` for a custom one), which means the rule's bus. The region
comes from the ARN, else ``ASYNCEVENTS_EVENTBRIDGE_REGION``, else boto3's own
configuration; credentials come from boto3's default chain.

boto3 is imported at module level: without it this plugin is not loaded,
``asyncevents sinks`` lists it as "needs asyncevents[aws]" (not as a failure),
subscribing to it says what to install, and the other sinks still work.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
from botocore.config import Config
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult, SinkFactory, cloudevent
from asyncevents.errors import ConfigError, InvalidRecipient
from asyncevents.sinks.awserrors import call_failure, redact
from asyncevents.sinks.batching import MicroBatcher

__all__ = [
    "MAX_ENTRIES_PER_CALL",
    "EventBridgeSettings",
    "EventBridgeSink",
    "EventBus",
    "entry_size",
    "parse_recipient",
    "register_sinks",
]

#: PutEvents takes at most this many entries per call.
MAX_ENTRIES_PER_CALL = 10
_TIME_BYTES = 14  # what a set Time counts for, as AWS computes the entry size
_RETRYABLE_ENTRY_CODES = frozenset({"ThrottlingException", "InternalFailure"})
_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):events:(?P<region>[a-z0-9-]*):(?P<account>[0-9]*):"
    r"(?P<kind>[a-z-]+)/(?P<path>.*)$"
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$")
_BUS_NAME = re.compile(r"^[/.\-_A-Za-z0-9]{1,256}$")
_RULE_NAME = re.compile(r"^[.\-_A-Za-z0-9]{1,64}$")


class EventBridgeSettings(BaseSettings):
    """The EventBridge sink's own settings, from ``ASYNCEVENTS_EVENTBRIDGE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_EVENTBRIDGE_", extra="ignore")

    region: str | None = Field(default=None, description="region when the recipient is no ARN")
    endpoint_url: str | None = Field(default=None, description="another endpoint (tests, VPC)")
    source: str = Field(default="asyncevents", min_length=1, max_length=256)
    max_entry_bytes: int = Field(default=1_048_576, gt=0, description="256 KB on old accounts")
    batch_window_ms: float = Field(default=10.0, ge=0, le=1000)

    @classmethod
    def from_env(cls) -> EventBridgeSettings:
        """Read the environment, turning a mistake into a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_EVENTBRIDGE_{where.upper()}: {first['msg']}"
            ) from None


@dataclass(frozen=True)
class EventBus:
    """Where a recipient's events go: the ``EventBusName`` to send and the region to call."""

    name: str
    region: str | None = None


def parse_recipient(recipient: str) -> EventBus:
    """Read an event bus name, event bus ARN or rule ARN; ``InvalidRecipient`` if it is none."""
    recipient = recipient.strip()
    if not recipient.startswith("arn:"):
        if not _BUS_NAME.match(recipient):
            raise InvalidRecipient(
                "an EventBridge recipient is an event bus name (letters, digits, . - _ /, "
                "at most 256), or an ARN arn:aws:events:REGION:ACCOUNT:event-bus/NAME"
            )
        return EventBus(recipient)
    match = _ARN.match(recipient)
    if match is None:
        raise InvalidRecipient("not an EventBridge ARN; expected "
                               "arn:aws:events:REGION:ACCOUNT:event-bus/NAME")
    region, account, kind, path = match["region"], match["account"], match["kind"], match["path"]
    if not _REGION.match(region):
        raise InvalidRecipient(f"the ARN's region {region!r} is not a region name")
    if not re.fullmatch(r"[0-9]{12}", account):
        raise InvalidRecipient("the ARN's account must be 12 digits")
    if kind == "event-bus":
        if not _BUS_NAME.match(path):
            raise InvalidRecipient("the ARN's event bus name is invalid")
        return EventBus(recipient, region)
    if kind == "rule":
        bus, _, rule = path.rpartition("/")
        if not _RULE_NAME.match(rule) or (bus and not _BUS_NAME.match(bus)):
            raise InvalidRecipient("the rule ARN's name is invalid")
        if not bus:
            return EventBus("default", region)
        return EventBus(f"arn:{match['partition']}:events:{region}:{account}:event-bus/{bus}",
                        region)
    raise InvalidRecipient(f"an ARN of an EventBridge {kind!r}; expected an event-bus or rule ARN")


def entry_size(entry: Mapping[str, Any]) -> int:
    """A PutEvents entry's size as AWS computes it against the limit.

    UTF-8 bytes of Source, DetailType, Detail and each Resources item, plus
    14 when Time is set.
    """
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if value is not None:
            size += len(str(value).encode("utf-8"))
    for resource in entry.get("Resources") or ():
        if resource is not None:
            size += len(str(resource).encode("utf-8"))
    return size


class EventBridgeSink:
    """Delivers events to Amazon EventBridge event buses with ``PutEvents``."""

    name: ClassVar[str] = "eventbridge"
    #: AWS authenticates the call; the entries carry no signature of the token.
    signs: ClassVar[bool] = False

    def __init__(self, settings: Settings, options: EventBridgeSettings | None = None) -> None:
        self.options = options if options is not None else EventBridgeSettings.from_env()
        self._session = boto3.session.Session()
        self._config = Config(
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_timeout,
            # One quick retry for a blip; the core's policy handles real outages.
            retries={"mode": "standard", "total_max_attempts": 2},
            max_pool_connections=20,
            user_agent_extra="asyncevents",
        )
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        self._batcher: MicroBatcher[tuple[str | None, str], dict[str, Any], DeliveryResult] = (
            MicroBatcher(self._send, max_items=MAX_ENTRIES_PER_CALL,
                         window=self.options.batch_window_ms / 1000,
                         max_weight=self.options.max_entry_bytes)
        )

    def client(self, region: str | None = None) -> Any:
        """The (shared, thread-safe) boto3 ``events`` client for ``region``.

        ``None`` means the ``region`` setting, else boto3's configured region.
        """
        region = region or self.options.region
        with self._lock:  # a boto3 Session is not thread-safe; its clients are
            client = self._clients.get(region)
            if client is None:
                client = self._session.client(
                    "events", region_name=region, endpoint_url=self.options.endpoint_url,
                    config=self._config,
                )
                self._clients[region] = client
            return client

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` names a bus in a known region."""
        bus = parse_recipient(recipient)
        if not (bus.region or self.options.region or self._session.region_name):
            raise InvalidRecipient(
                "no AWS region for this event bus: subscribe its ARN, or set "
                "ASYNCEVENTS_EVENTBRIDGE_REGION (or AWS_REGION)"
            )

    def entry(self, request: DeliveryRequest, bus: EventBus) -> dict[str, Any]:
        """The PutEvents entry for ``request``."""
        return {
            "EventBusName": bus.name,
            "Source": self.options.source,
            "DetailType": request.event_name,
            "Detail": json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False),
            "Time": request.published_at,
        }

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Put the event on the bus (batched with concurrent deliveries to the same bus)."""
        try:
            bus = parse_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        entry = self.entry(request, bus)
        size = entry_size(entry)
        limit = self.options.max_entry_bytes
        if size > limit:
            return DeliveryResult.failed(
                f"event too large for EventBridge: the entry is {size:,} bytes, over the "
                f"limit of {limit:,} (ASYNCEVENTS_EVENTBRIDGE_MAX_ENTRY_BYTES)",
                retryable=False,
            )
        region = bus.region or self.options.region
        return self._batcher.submit((region, bus.name), entry, size)

    def close(self) -> None:
        """Close every client's connection pool."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _send(self, key: tuple[str | None, str], entries: list[dict[str, Any]]
              ) -> list[DeliveryResult]:
        try:
            response = self.client(key[0]).put_events(Entries=entries)
        except Exception as exc:
            return [call_failure(exc, self._session, "PutEvents")] * len(entries)
        answers = response.get("Entries") or []
        if len(answers) != len(entries):
            failure = DeliveryResult.failed(
                f"EventBridge answered {len(answers)} entries for {len(entries)}")
            return [failure] * len(entries)
        return [self._entry_result(answer) for answer in answers]

    def _entry_result(self, answer: Mapping[str, Any]) -> DeliveryResult:
        code = answer.get("ErrorCode")
        if not code:
            return DeliveryResult.ok(200, json.dumps({"EventId": answer.get("EventId")}))
        message = self._redact(str(answer.get("ErrorMessage") or ""))
        return DeliveryResult.failed(
            f"EventBridge rejected the entry: {code}" + (f": {message}" if message else ""),
            retryable=code in _RETRYABLE_ENTRY_CODES,
            response=json.dumps({"ErrorCode": code, "ErrorMessage": message}),
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._session)


if TYPE_CHECKING:
    _factory: SinkFactory = EventBridgeSink  # mypy checks the class fits the extension point


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``eventbridge`` sink."""
    register("eventbridge", EventBridgeSink)
