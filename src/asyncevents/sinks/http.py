"""The HTTP webhook sink: CloudEvents JSON, signed the Standard Webhooks way.

Each delivery is one ``POST`` of the CloudEvents 1.0 structured document
with ``webhook-id`` (the delivery uuid, the same on every attempt so the
receiver can drop duplicates), ``webhook-timestamp`` and
``webhook-signature`` headers, and the subscription's own extra headers
(which never replace those, nor the content and connection headers).

With ``ASYNCEVENTS_HTTP_PROXY`` every request leaves through that proxy. The
recipient's addresses are still resolved and checked before each attempt
(the SSRF guard), but the TCP connection goes to the proxy, pinned to the
addresses its name resolved to for that attempt; the proxy resolves the
recipient again itself, so its own egress rules are what stops a name that
rebinds between the check and the proxy's lookup.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import json
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import httpx

from asyncevents.core.clock import utcnow
from asyncevents.core.hookspecs import hookimpl
from asyncevents.core.settings import Settings
from asyncevents.core.sink import (
    DeliveryRequest,
    DeliveryResult,
    SinkFactory,
    cloudevent,
    header_value_problem,
    is_reserved_header,
    signature_header,
)
from asyncevents.errors import ConfigError, InvalidRecipient
from asyncevents.sinks.addresses import (
    AllowList,
    IPAddress,
    UnresolvableHost,
    check_host,
    resolve,
)
from asyncevents.sinks.aio import new_session, read_excerpt
from asyncevents.sinks.pinning import PinnedTransport, checked_addresses, pinned

__all__ = ["CONTENT_TYPE", "USER_AGENT", "HttpSink", "register_sinks", "retry_after_seconds"]

CONTENT_TYPE = "application/cloudevents+json"


def _version() -> str:
    try:
        return metadata.version("asyncevents")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"asyncevents/{_version()}"
_MAX_CONNECTIONS = 20
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


def retry_after_seconds(
    value: str | None, *, cap: float, now: datetime | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP date), capped.

    ``None`` when the header is absent or unreadable; a date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


class HttpSink:
    """Delivers events to webhook URLs over HTTP(S)."""

    name: ClassVar[str] = "http"
    #: Standard Webhooks signatures with the subscription's token (or its Ed25519 key).
    signs: ClassVar[bool] = True

    def __init__(self, settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context``: the certificates to trust instead of the system's (a private CA)."""
        self._allowed = AllowList.parse(settings.allowed_networks)
        self._excerpt_bytes = settings.response_excerpt_bytes
        self._read_budget = settings.http_timeout
        self._max_retry_after = settings.max_retry_after
        # One connection pool for every thread of the worker, used through
        # httpx's transport directly: the Client's cookie jar, auth and
        # redirect machinery are not wanted here (a cookie one subscriber sets
        # must not go to another on the same host; redirects are not followed)
        # and cost a good share of a delivery's CPU. No proxy from the
        # environment (it would connect past the address guard) and no
        # ~/.netrc. The transport connects only to addresses the guard
        # checked (pinning).
        self._proxy, self._proxy_host = _proxy_of(settings.http_proxy)
        self._transport: httpx.BaseTransport = PinnedTransport(
            verify=ssl_context if ssl_context is not None else True,
            limits=httpx.Limits(max_connections=_MAX_CONNECTIONS,
                                max_keepalive_connections=_MAX_CONNECTIONS),
            proxy=self._proxy,
        )
        self._timeout = httpx.Timeout(settings.http_timeout,
                                      connect=settings.http_connect_timeout).as_dict()
        # The asynchronous client, made in the event loop that first uses it.
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._literals: dict[str, tuple[IPAddress, ...]] = {}  # IP-literal hosts, checked
        self._aio_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.http_connect_timeout,
            sock_read=settings.http_timeout)

    def validate_recipient(self, recipient: str) -> None:
        """Raise ``InvalidRecipient`` unless ``recipient`` is an http(s) URL we may call.

        A host name that does not resolve now raises ``UnresolvableHost``, an
        ``UnverifiedRecipient``: the subscription is accepted with a warning.
        """
        check_host(_host_of(recipient), self._allowed)

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        """POST the event to ``request.recipient`` and classify the answer."""
        return _scrubbed(request, self._deliver(request))

    async def deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
        """The same as :meth:`deliver`, on the running event loop (the worker's engine)."""
        return _scrubbed(request, await self._deliver_async(request))

    def close(self) -> None:
        """Close the synchronous client's connection pool (``aclose`` closes the other)."""
        self._transport.close()

    async def aclose(self) -> None:
        """Close the asynchronous client (in the event loop that uses it)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _prepare(self, request: DeliveryRequest,
                 addresses: tuple[IPAddress, ...] | None = None) -> _Post | DeliveryResult:
        """The checked addresses, body and headers of one attempt, or why there is none."""
        # Checked again on every attempt: DNS may now answer differently than
        # at subscribe time (rebinding). The connection then goes to exactly
        # the addresses checked here, never to a second lookup's answer.
        try:
            url, host = _parsed(request.recipient)
            if addresses is None:
                addresses = checked_addresses(host, self._allowed)
        except UnresolvableHost as exc:
            return DeliveryResult.failed(str(exc))
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        body = json.dumps(cloudevent(request), separators=(",", ":")).encode("utf-8")
        timestamp = int(time.time())
        try:
            signature = signature_header(request, timestamp, body)
        except ValueError as exc:
            return DeliveryResult.failed(str(exc), retryable=False)
        # The subscription's headers first, so that none can replace ours; the
        # rules refuse reserved names already, this keeps a stored one out too.
        headers = {name: value for name, value in request.headers.items()
                   if not is_reserved_header(name) and name.lower() != "user-agent"}
        for name, value in headers.items():
            # The rules refuse these at subscribe time; a row stored before they did
            # fails for good with a clear error rather than on every attempt.
            problem = header_value_problem(value, ascii_only=False)
            if problem is not None:
                return DeliveryResult.failed(
                    f"header {name!r}: the value {problem}; change the subscription's "
                    "headers (subscriptions update ID --header)", retryable=False)
        headers |= {
            "user-agent": next((v for k, v in request.headers.items()
                                if k.lower() == "user-agent"), USER_AGENT),
            "content-type": CONTENT_TYPE,
            # Compressed bodies are inflated only up to the excerpt; better not to get one.
            "accept-encoding": "identity",
            "webhook-id": request.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        return _Post(url, host, addresses, body, headers)

    def _deliver(self, request: DeliveryRequest) -> DeliveryResult:
        post = self._prepare(request)
        if isinstance(post, DeliveryResult):
            return post
        # Values as UTF-8 bytes, as the asynchronous client sends them (httpx would
        # refuse a non-ASCII value that an older row may hold).
        sent = httpx.Request("POST", post.url, content=post.body,
                             headers=[(k.encode("ascii"), v.encode("utf-8"))
                                      for k, v in post.headers.items()],
                             extensions={"timeout": self._timeout})
        try:
            via = self._proxy_addresses()
        except (UnresolvableHost, InvalidRecipient) as exc:
            return DeliveryResult.failed(f"proxy: {exc}")
        try:
            with pinned(post.host, post.addresses), pinned(self._proxy_host, via):
                response = self._transport.handle_request(sent)
                try:
                    excerpt = self._excerpt(response)
                finally:
                    response.close()
        except httpx.TimeoutException as exc:
            return DeliveryResult.failed(f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return DeliveryResult.failed(f"request failed: {type(exc).__name__}: {exc}")
        return self._classify(response.status_code, response.reason_phrase,
                              response.headers.get("retry-after"), excerpt)

    async def _deliver_async(self, request: DeliveryRequest) -> DeliveryResult:
        addresses: tuple[IPAddress, ...] | None = None
        try:
            _, host = _parsed(request.recipient)
            if _is_literal(host):  # no lookup: the same answer every time
                addresses = self._literals.get(host)
                if addresses is None:
                    addresses = self._literals[host] = checked_addresses(host, self._allowed)
            else:  # a name: its DNS lookup blocks, so not on the loop
                addresses = await asyncio.to_thread(checked_addresses, host, self._allowed)
        except UnresolvableHost as exc:
            return DeliveryResult.failed(str(exc))
        except InvalidRecipient as exc:
            return DeliveryResult.failed(f"recipient address refused: {exc}", retryable=False)
        post = self._prepare(request, addresses)
        if isinstance(post, DeliveryResult):
            return post
        if self._session is None:
            self._session = new_session(self._ssl_context, _MAX_CONNECTIONS)
        try:
            via = (await asyncio.to_thread(self._proxy_addresses) if self._proxy_host
                   and not _is_literal(self._proxy_host) else self._proxy_addresses())
        except (UnresolvableHost, InvalidRecipient) as exc:
            return DeliveryResult.failed(f"proxy: {exc}")
        try:
            with pinned(post.host, post.addresses), pinned(self._proxy_host, via):
                async with self._session.post(
                        str(post.url), data=post.body, headers=post.headers,
                        allow_redirects=False, timeout=self._aio_timeout,
                        proxy=self._proxy) as response:
                    excerpt = await self._excerpt_async(response)
                    return self._classify(response.status, response.reason or "",
                                          response.headers.get("retry-after"), excerpt)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return DeliveryResult.failed(f"timed out ({type(exc).__name__})")
        except (aiohttp.ClientError, OSError) as exc:
            # Named as the synchronous client names them: one error text whichever
            # client made the attempt, for searches and alerts on it.
            kind = ("ConnectError" if isinstance(exc, aiohttp.ClientConnectorError)
                    else type(exc).__name__)
            return DeliveryResult.failed(f"request failed: {kind}: {exc}")

    def _proxy_addresses(self) -> tuple[IPAddress, ...]:
        """The proxy's addresses for this attempt (none without a proxy).

        Not checked against ``allowed_networks``: the operator chose the proxy,
        and it is usually on a private network.
        """
        return tuple(resolve(self._proxy_host)) if self._proxy_host else ()

    def _excerpt(self, response: httpx.Response) -> str:
        """At most ``response_excerpt_bytes`` of the body, without reading the rest."""
        limit = self._excerpt_bytes
        if limit <= 0:
            return ""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        inflate = _inflater(encoding)
        if inflate is None and encoding != "identity":
            return f"[{encoding}-encoded response body not shown]"
        data = b""
        deadline = time.monotonic() + self._read_budget
        try:
            # iter_raw, not iter_bytes: httpx would inflate each network chunk
            # whole, and a small gzip bomb is many megabytes inflated.
            for chunk in response.iter_raw():
                if inflate is not None:
                    chunk = inflate.decompress(chunk, limit - len(data))
                data += chunk
                if len(data) >= limit or time.monotonic() > deadline:
                    break
        except httpx.HTTPError:
            pass  # the status already arrived; a body cut short does not change it
        except zlib.error:
            return f"[{encoding}-encoded response body could not be decoded]"
        return _text(data[:limit])

    async def _excerpt_async(self, response: aiohttp.ClientResponse) -> str:
        """:meth:`_excerpt` for the asynchronous client."""
        limit = self._excerpt_bytes
        if limit <= 0:
            return ""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if _inflater(encoding) is None and encoding != "identity":
            return f"[{encoding}-encoded response body not shown]"
        try:
            data = await read_excerpt(response, limit, self._read_budget,
                                      None if encoding == "identity"
                                      else functools.partial(_inflater, encoding))
        except zlib.error:
            return f"[{encoding}-encoded response body could not be decoded]"
        return _text(data)

    def _classify(self, status: int, phrase: str, retry_after: str | None,
                  excerpt: str) -> DeliveryResult:
        if 200 <= status < 300:
            return DeliveryResult.ok(status, excerpt)
        reason = f"HTTP {status} {phrase}".rstrip()
        if status == 410:
            return DeliveryResult.failed(
                f"{reason}: the receiver asked to stop; disabling the subscription",
                retryable=False, status_code=status, response=excerpt, disable_subscription=True,
            )
        if status in _RETRYABLE_STATUSES or status >= 500:
            wait = retry_after_seconds(retry_after, cap=self._max_retry_after)
            return DeliveryResult.failed(
                reason, retry_after=wait, status_code=status, response=excerpt
            )
        if 300 <= status < 400:
            reason += " (redirects are not followed; subscribe the final URL)"
        return DeliveryResult.failed(reason, retryable=False, status_code=status, response=excerpt)


@dataclass(frozen=True)
class _Post:
    """One attempt's request, ready to send."""

    url: httpx.URL
    host: str
    addresses: tuple[IPAddress, ...]
    body: bytes
    headers: dict[str, str]


def _scrubbed(request: DeliveryRequest, result: DeliveryResult) -> DeliveryResult:
    """The result without a secret in its error, should a library have echoed one."""
    for secret in (request.token, request.previous_token, request.signing_key):
        if secret and result.error and secret in result.error:
            result = replace(result, error=result.error.replace(secret, "***"))
    return result


def _text(data: bytes) -> str:
    # An incremental decoder drops a character cut in half at the limit
    # instead of showing a replacement character for it.
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data)


@functools.lru_cache(maxsize=4096)
def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _inflater(encoding: str) -> zlib._Decompress | None:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


def _proxy_of(setting: str | None) -> tuple[str | None, str]:
    """The proxy URL (None: no proxy) and its host, or ``ConfigError`` naming the setting."""
    if not setting:
        return None, ""
    try:
        url = httpx.URL(setting)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise ConfigError("ASYNCEVENTS_HTTP_PROXY must be an http:// or https:// URL "
                          "such as http://proxy.internal:3128")
    return setting, url.raw_host.decode("ascii")


@functools.lru_cache(maxsize=4096)
def _parsed(recipient: str) -> tuple[httpx.URL, str]:
    """The parsed URL and host of a recipient (a worker sees the same few again and again)."""
    host = _host_of(recipient)  # first: its errors say what is wrong
    return httpx.URL(recipient), host


def _host_of(recipient: str) -> str:
    """The host of an absolute http(s) URL, or ``InvalidRecipient`` saying what is wrong."""
    # The messages leave the URL out: it may carry credentials as userinfo,
    # and they end up in every attempt's error.
    try:
        url = httpx.URL(recipient)
    except (httpx.InvalidURL, TypeError):
        raise InvalidRecipient("the recipient is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        what = f"scheme {url.scheme!r}" if url.scheme else "no scheme"
        raise InvalidRecipient(f"the recipient has {what}; expected an http:// or https:// URL")
    if not url.raw_host:
        raise InvalidRecipient("the recipient URL has no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise InvalidRecipient(f"the recipient URL has port {url.port}, outside 1-65535")
    # raw_host is the IDNA (ASCII) form, the one DNS is asked about.
    return url.raw_host.decode("ascii")


if TYPE_CHECKING:
    _factory: SinkFactory = HttpSink  # mypy checks the class fits the extension point


@hookimpl
def register_sinks(register: Callable[[str, Any], None]) -> None:
    """Register the ``http`` sink."""
    register("http", HttpSink)
