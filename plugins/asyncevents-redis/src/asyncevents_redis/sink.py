"""The Redis Streams sink: one ``XADD`` per delivery to the stream named by the recipient."""

from __future__ import annotations

import json
import re
from typing import ClassVar
from urllib.parse import unquote, urlsplit

import redis
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from asyncevents import (
    ConfigError,
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    cloudevent,
)

__all__ = ["RedisSettings", "RedisStreamSink", "stream_fields"]

_STREAM_KEY = re.compile(r"^[^\s\x00-\x1f\x7f]{1,1024}$")
# Replies that no retry can fix: a key of another type, a bad command, no permission.
_PERMANENT_REPLIES = ("WRONGTYPE", "ERR", "NOPERM")


class RedisSettings(BaseSettings):
    """The Redis sink's settings, from ``ASYNCEVENTS_REDIS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ASYNCEVENTS_REDIS_", extra="ignore")

    url: str = Field(default="redis://127.0.0.1:6379/0", description="redis:// or rediss:// URL")
    maxlen: int = Field(default=10_000, ge=0, description="MAXLEN ~ per stream; 0: no trimming")
    timeout: float = Field(default=5.0, gt=0, description="connect and command timeout, seconds")

    @classmethod
    def from_env(cls) -> RedisSettings:
        """Read the environment; a bad value is a one-line ``ConfigError``."""
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "_".join(str(part) for part in first["loc"]).upper()
            raise ConfigError(
                f"invalid setting ASYNCEVENTS_REDIS_{where}: {first['msg']}") from None


def stream_fields(request: DeliveryRequest) -> dict[str, str]:
    """The stream entry's fields: the CloudEvent's attributes, ``data`` as JSON, the delivery id.

    ``delivery_id`` is the same on every attempt, so a consumer can drop a duplicate.
    """
    event = cloudevent(request)
    return {
        "id": event["id"],
        "type": event["type"],
        "source": event["source"],
        "time": event["time"],
        "datacontenttype": event["datacontenttype"],
        "data": json.dumps(event["data"], separators=(",", ":"), ensure_ascii=False),
        "delivery_id": request.delivery_id,
    }


class RedisStreamSink:
    """Appends events to Redis Streams (``XADD key MAXLEN ~ N * field value ...``)."""

    name: ClassVar[str] = "redis"

    def __init__(self, settings: Settings, options: RedisSettings | None = None) -> None:
        self.options = options if options is not None else RedisSettings.from_env()
        try:
            # One pooled, thread-safe client; a single quick retry on a dropped connection,
            # the core's retry policy does the rest.
            self._client = redis.Redis.from_url(
                self.options.url, socket_timeout=self.options.timeout,
                socket_connect_timeout=self.options.timeout,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid setting ASYNCEVENTS_REDIS_URL: {self._redact(str(exc))}"
                              ) from None

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is a usable stream key."""
        if not _STREAM_KEY.match(recipient):
            raise InvalidRecipient("a Redis stream key has 1-1024 characters, "
                                   "without spaces or control characters")

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """``XADD`` the event to the stream; classify what Redis answers."""
        try:
            self.validate_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        maxlen = self.options.maxlen or None
        try:
            entry_id = self._client.xadd(request.recipient, stream_fields(request),  # type: ignore[arg-type]
                                         maxlen=maxlen, approximate=True)
        except redis.ResponseError as exc:
            message = self._redact(str(exc))
            permanent = message.startswith(_PERMANENT_REPLIES)
            return DeliveryResult.failed(f"Redis refused: {message}", retryable=not permanent)
        except redis.RedisError as exc:  # connection refused, timeouts, loading, auth
            return DeliveryResult.failed(f"{type(exc).__name__}: {self._redact(str(exc))}")
        if isinstance(entry_id, bytes):
            entry_id = entry_id.decode()
        return DeliveryResult.ok(response=str(entry_id))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _redact(self, text: str) -> str:
        """``text`` without the password of the Redis URL."""
        password = urlsplit(self.options.url).password
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
        return text
