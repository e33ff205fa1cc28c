"""The sink extension point: what a sink receives and what it answers.

A sink is a small class, registered by a plugin's ``register_sinks`` hook::

    class Sink(Protocol):
        name: ClassVar[str]
        def validate_recipient(self, recipient: str) -> None: ...
        def deliver(self, request: DeliveryRequest) -> DeliveryResult: ...
        def close(self) -> None: ...

The worker builds one instance per sink name with ``SinkClass(settings)`` and
reuses it for every delivery, from several threads at once.

A sink that does not sign what it delivers with the subscription's
verification token says so with a class attribute, ``signs: ClassVar[bool] =
False`` (``eventbridge``, ``python``): subscribing to it then needs no token.
A sink that does not say is taken to sign (:func:`sink_signs`), and a token
is required, as for ``http``.

A sink may also be asynchronous: with ``async def deliver_async(request)``
the worker's engine awaits it on its event loop (many deliveries in flight
without a thread each) instead of calling ``deliver`` in a thread, and calls
``async def aclose()``, when there is one, in that loop before ``close()``.
``deliver`` stays: it is what synchronous callers (and the testing kit) use.

And what sinks that sign share: Standard Webhooks signatures
(https://www.standardwebhooks.com/), ``webhook-signature: v1,<base64
HMAC-SHA256 of "{id}.{timestamp}.{body}">``, or ``v1a,<base64 Ed25519
signature of the same>`` for ``ed25519`` subscriptions.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from asyncevents.core.settings import Settings

__all__ = [
    "HOP_BY_HOP_HEADERS",
    "PRIVATE_KEY_PREFIX",
    "PUBLIC_KEY_PREFIX",
    "PYTHON_SINK",
    "RESERVED_HEADERS",
    "SECRET_PREFIX",
    "DeliveryRequest",
    "DeliveryResult",
    "Sink",
    "SinkFactory",
    "cloudevent",
    "ed25519_keys",
    "header_value_problem",
    "is_reserved_header",
    "sign",
    "sign_ed25519",
    "signature_header",
    "signing_key",
    "sink_signs",
]

PYTHON_SINK = "python"
"""The sink of handler subscriptions; its recipients are import paths ``module:qualname``."""


@dataclass(frozen=True)
class DeliveryRequest:
    """One copy of an event on its way to one subscription."""

    delivery_id: str
    event_id: str
    event_name: str
    subscription_id: str
    recipient: str
    token: str = field(repr=False)
    payload: dict[str, Any]
    published_at: datetime
    attempt: int = 1
    source: str = "asyncevents"
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The subscription's extra headers (never one of :data:`RESERVED_HEADERS`).
    headers: dict[str, str] = field(default_factory=dict)
    #: ``hmac`` (Standard Webhooks ``v1``) or ``ed25519`` (``v1a``, with ``signing_key``).
    signature: str = "hmac"
    #: ``whsk_...``: the Ed25519 private key of an ``ed25519`` subscription.
    signing_key: str = field(default="", repr=False)
    #: A rotated token still in its grace period: its signature is sent too.
    previous_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class DeliveryResult:
    """What happened when a sink tried to deliver.

    ``retryable`` matters only when ``success`` is false; ``retry_after``
    (seconds) overrides the back-off; ``disable_subscription`` asks the core to
    switch the subscription off (HTTP ``410 Gone``).
    """

    success: bool
    retryable: bool = True
    retry_after: float | None = None
    status_code: int | None = None
    response: str = ""
    error: str | None = None
    disable_subscription: bool = False

    @classmethod
    def ok(cls, status_code: int | None = None, response: str = "") -> DeliveryResult:
        """A successful delivery."""
        return cls(success=True, retryable=False, status_code=status_code, response=response)

    @classmethod
    def failed(
        cls, error: str, *, retryable: bool = True, retry_after: float | None = None,
        status_code: int | None = None, response: str = "", disable_subscription: bool = False,
    ) -> DeliveryResult:
        """A failed delivery, retryable unless told otherwise."""
        return cls(
            success=False, retryable=retryable, retry_after=retry_after,
            status_code=status_code, response=response, error=error,
            disable_subscription=disable_subscription,
        )


@runtime_checkable
class Sink(Protocol):
    """A destination kind: HTTP, EventBridge, or anything a plugin adds."""

    name: ClassVar[str]

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` when ``recipient`` cannot be delivered to."""

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """Deliver one copy; raise ``RetryableSinkError`` / ``PermanentSinkError`` or answer."""

    def close(self) -> None:
        """Release clients and connections."""


#: What ``register_sinks`` registers: a class (or any callable) taking the settings.
SinkFactory = Callable[["Settings"], Sink]


def sink_signs(factory: object) -> bool:
    """Whether the sink that ``factory`` builds signs its deliveries with the token.

    Its ``signs`` class attribute; True when it has none (a token is asked for).
    Not a member of :class:`Sink`, so that sinks written before it still are sinks.
    """
    return bool(getattr(factory, "signs", True))


def cloudevent(request: DeliveryRequest) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode document for ``request``."""
    published = request.published_at.astimezone(UTC)
    return {
        "specversion": "1.0",
        "id": request.event_id,
        "source": request.source,
        "type": request.event_name,
        "time": published.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": request.payload,
    }

SECRET_PREFIX = "whsec_"
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"

HOP_BY_HOP_HEADERS = frozenset({
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
    "proxy-authenticate", "proxy-authorization", "proxy-connection", "http2-settings",
    # Not hop-by-hop, but it changes the exchange the same way: with
    # ``Expect: 100-continue`` a client waits for an interim answer that many
    # receivers never send, and aiohttp waits for it with no timeout at all.
    "expect",
})
"""Headers about the connection or the exchange, not the message (RFC 9110 7.6.1):
the HTTP clients manage them, a subscription never sets one."""

RESERVED_HEADERS = HOP_BY_HOP_HEADERS | frozenset({
    "webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length",
    "content-encoding", "host", "accept-encoding",
})
"""Headers a sink sets itself, and the hop-by-hop ones: a subscription's extra
``headers`` never name one (nor any ``webhook-*``)."""


def is_reserved_header(name: str) -> bool:
    """True for a header a subscription may not set (see :data:`RESERVED_HEADERS`)."""
    lowered = name.strip().lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("webhook-")


def header_value_problem(value: str, *, ascii_only: bool = True) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or None when it can.

    A value is visible ASCII, spaces and tabs (RFC 9110 5.5); ``ascii_only=False``
    lets characters above U+007F through (what an existing row may hold: one HTTP
    client sends them as UTF-8, the other refuses them). The answer never quotes
    the value, which may be a secret: it names the kind of character and where.
    """
    for position, char in enumerate(value, start=1):
        code = ord(char)
        if code == 0x09 or 0x20 <= code < 0x7F:
            continue
        if code < 0x20 or code == 0x7F:
            what = "a line break" if char in "\r\n" else f"a control character (U+{code:04X})"
            return f"contains {what} at position {position}"
        if ascii_only:
            return f"contains a non-ASCII character at position {position}"
    return None


def signing_key(token: str) -> bytes:
    """The HMAC key for ``token``.

    A ``whsec_`` token is the base64 of the key, as Standard Webhooks
    libraries generate it; any other token is the key itself, as UTF-8.
    Raises ``ValueError`` (whose message never contains the token) when the
    token is empty or a ``whsec_`` token is not valid base64.
    """
    if not token.startswith(SECRET_PREFIX):
        if not token:
            raise ValueError("the verification token is empty")
        return token.encode("utf-8")
    encoded = token[len(SECRET_PREFIX):].rstrip("=")
    try:
        # Padding is often dropped from these secrets; accept it either way,
        # as the reference library does. Stray characters are refused rather
        # than skipped, so a mangled token fails loudly instead of signing
        # with a key the receiver does not have.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the verification token starts with {SECRET_PREFIX!r} but the rest is not base64"
        ) from None
    if not key:
        raise ValueError(f"the verification token has nothing after {SECRET_PREFIX!r}")
    return key


def sign(token: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(signing_key(token), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _b64decode(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@functools.lru_cache(maxsize=256)
def _private_key(signing_key: str) -> Ed25519PrivateKey:
    if not signing_key.startswith(PRIVATE_KEY_PREFIX):
        raise ValueError(f"an Ed25519 signing key starts with {PRIVATE_KEY_PREFIX!r}")
    try:
        raw = _b64decode(signing_key[len(PRIVATE_KEY_PREFIX):])
    except (binascii.Error, ValueError):
        raise ValueError(f"the {PRIVATE_KEY_PREFIX} key is not base64") from None
    if len(raw) not in (32, 64):  # the seed, or the seed and the public key (libsodium)
        raise ValueError(f"the {PRIVATE_KEY_PREFIX} key must be 32 bytes (an Ed25519 seed)")
    return Ed25519PrivateKey.from_private_bytes(raw[:32])


def ed25519_keys(signing_key: str | None = None) -> tuple[str, str]:
    """``(whsk_..., whpk_...)``: ``signing_key`` (a new one if None) and its public key.

    Raises ``ValueError`` (without the key in its message) for a malformed key.
    """
    if signing_key is None:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        signing_key = PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode("ascii")
    public = _private_key(signing_key).public_key().public_bytes_raw()
    return signing_key, PUBLIC_KEY_PREFIX + base64.b64encode(public).decode("ascii")


def sign_ed25519(signing_key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``v1a`` signature: Ed25519 over ``{id}.{timestamp}.{body}``."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    return "v1a," + base64.b64encode(_private_key(signing_key).sign(signed)).decode("ascii")


def signature_header(request: DeliveryRequest, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` for ``request``: every signature it calls for, space-separated.

    ``v1a,<Ed25519 signature>`` for an ``ed25519`` subscription; otherwise
    ``v1,<hmac of the token>``, followed during a rotation's grace by
    ``v1,<hmac of the previous token>`` (Standard Webhooks lets a receiver
    accept any one of them). Raises ``ValueError`` for a secret that cannot sign.
    """
    if request.signature == "ed25519":
        return sign_ed25519(request.signing_key, request.delivery_id, timestamp, body)
    header = sign(request.token, request.delivery_id, timestamp, body)
    if request.previous_token:
        header += " " + sign(request.previous_token, request.delivery_id, timestamp, body)
    return header
