"""The NATS sink: publish each delivery to a JetStream subject and wait for the stream's ack."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any, ClassVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from asyncevents import (
    DeliveryRequest,
    DeliveryResult,
    InvalidRecipient,
    Settings,
    UnverifiedRecipient,
    check_address,
    cloudevent,
    guarded_addresses,
)
from asyncevents_nats.loop import LoopThread
from asyncevents_nats.recipient import Target, parse_recipient
from asyncevents_nats.settings import NatsSettings

__all__ = ["NatsSink", "classify", "message_headers"]

# JetStream error codes that clear by themselves: a full stream (discard new), no resources.
_RETRYABLE_ERR_CODES = frozenset({10077, 10078, 10023, 10028})
_ConnectionKey = tuple[str, str, int, str | None, str]


def message_headers(request: DeliveryRequest) -> dict[str, str]:
    """The message headers: ``Nats-Msg-Id`` (the delivery id) and the CloudEvent's attributes.

    The delivery id is the same on every attempt, so the stream drops a copy
    sent again within its duplicate window (2 minutes by default).
    """
    event = cloudevent(request)
    return {
        "Nats-Msg-Id": request.delivery_id,
        "Content-Type": "application/cloudevents+json; charset=utf-8",
        "ce-specversion": event["specversion"],
        "ce-id": event["id"],
        "ce-source": event["source"],
        "ce-type": event["type"],
        "ce-time": event["time"],
    }


async def _ignore_async_error(exc: Exception) -> None:
    # nats-py's default logs a traceback for each; the failing publish already reports it.
    return None


class NatsSink:
    """Publishes events to NATS JetStream subjects, waiting for the stream's ack."""

    name: ClassVar[str] = "nats"

    def __init__(self, settings: Settings, options: NatsSettings | None = None) -> None:
        self.settings = settings
        self.options = options if options is not None else NatsSettings.from_env()
        self._loop = LoopThread("asyncevents-nats")
        # Touched only on the loop's thread, so no lock beyond the per-server asyncio ones.
        self._clients: dict[_ConnectionKey, Client] = {}
        self._connecting: dict[_ConnectionKey, asyncio.Lock] = {}

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is ``nats://host[:port]/subject``
        on a server the address guard lets through (``ASYNCEVENTS_ALLOWED_NETWORKS``)."""
        check_address(parse_recipient(recipient).host, self.settings)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Publish the CloudEvent to the subject; succeed once the stream acknowledges it."""
        try:
            target = parse_recipient(request.recipient)
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"invalid recipient: {exc}", retryable=False)
        body = json.dumps(cloudevent(request), separators=(",", ":"), ensure_ascii=False)
        publish = self._publish(target, request.token, body.encode(), message_headers(request))
        try:
            # Connecting and the ack each get the timeout; a margin for the hand-over.
            ack = self._loop.run(publish, 2 * self.options.timeout + 1)
        except UnverifiedRecipient as exc:  # the name does not resolve (perhaps only now)
            return DeliveryResult.failed(str(exc))
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        except Exception as exc:
            message, retryable = classify(exc, target, self.options.timeout)
            return DeliveryResult.failed(message.replace(request.token, "***"),
                                         retryable=retryable)
        return DeliveryResult.ok(response=json.dumps(
            {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}))

    def close(self) -> None:
        """Close every connection, then the sink's event loop."""
        self._loop.stop(self._close_all() if self._loop.running else None)

    async def _publish(self, target: Target, token: str, body: bytes,
                       headers: dict[str, str]) -> Any:
        client = await self._client(target, token)
        return await client.jetstream().publish(target.subject, body, timeout=self.options.timeout,
                                                headers=headers)

    async def _client(self, target: Target, token: str) -> Client:
        # The token's digest, not the token, keys the cache: a rotated token connects anew.
        key = (target.scheme, target.host, target.port, target.user,
               hashlib.sha256(token.encode()).hexdigest())
        lock = self._connecting.setdefault(key, asyncio.Lock())
        async with lock:
            client = self._clients.get(key)
            if client is not None and not client.is_closed:
                return client
            auth: dict[str, Any] = ({"user": target.user, "password": token} if target.user
                                    else {"token": token})
            # The address guard at connect time: the server's name is resolved once
            # here, each address checked, and the client connects to those addresses
            # only (TLS still verifies the name). Its DNS lookup blocks: not on the loop.
            addresses = await asyncio.to_thread(guarded_addresses, target.host, target.port,
                                                self.settings)
            if target.scheme == "tls":
                auth["tls_hostname"] = target.host
            # No reconnection of its own: a lost connection closes the client, and the next
            # delivery connects again; the core retries the one that failed.
            client = await nats.connect(
                servers=[f"{target.scheme}://{a.netloc}" for a in addresses],
                dont_randomize=True, connect_timeout=self.options.timeout,
                allow_reconnect=False, max_reconnect_attempts=1,
                error_cb=_ignore_async_error, name="asyncevents", **auth)
            self._clients[key] = client
            return client

    async def _close_all(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._connecting.clear()
        for client in clients:
            if not client.is_closed:
                await client.close()


def classify(exc: BaseException, target: Target, timeout: float) -> tuple[str, bool]:
    """A failure's message and whether another attempt may succeed."""
    text = str(exc)
    if isinstance(exc, nats.errors.AuthorizationError) or "Authorization Violation" in text:
        return "NATS refused the credentials (authorization violation)", False
    if "Permissions Violation" in text:
        return f"NATS refused: no permission to publish to {target.subject!r}", False
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return f"no JetStream stream takes the subject {target.subject!r}", False
    if isinstance(exc, nats.js.errors.APIError):
        code, err_code = exc.code or 0, exc.err_code or 0
        retryable = code >= 500 or code == 429 or err_code in _RETRYABLE_ERR_CODES
        return f"JetStream refused: {code} {exc.description or ''}".strip(), retryable
    if isinstance(exc, nats.errors.MaxPayloadError):
        return "the event is larger than the server's max_payload", False
    if isinstance(exc, nats.errors.BadSubjectError):
        return f"NATS refused the subject {target.subject!r}", False
    if isinstance(exc, nats.errors.SecureConnRequiredError):
        return "the server requires TLS: subscribe a tls:// recipient", False
    if isinstance(exc, nats.errors.SecureConnWantedError):
        return "the server does not offer TLS: subscribe a nats:// recipient", False
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer from {target.server} within {timeout:g}s", True
    if isinstance(exc, nats.errors.NoServersError):
        return f"cannot connect to {target.server}", True
    # Connection refused or dropped, stale connections: worth another try.
    return f"{type(exc).__name__}: {text}", True
