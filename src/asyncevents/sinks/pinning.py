"""DNS pinning: connect to the address that passed the guard, not to a fresh lookup.

Checking a recipient's addresses and then letting the HTTP client resolve the
name again leaves a window (DNS rebinding): the name can answer a public
address to the check and ``127.0.0.1`` to the connect. Here the name is
resolved once, every address is checked (:func:`checked_addresses`), and
:class:`PinningBackend`, the network backend under the HTTP client, connects
only to those addresses while the request still carries the name: the
``Host`` header, TLS SNI and certificate verification all use it.

Usage::

    addresses = checked_addresses(host, allowed)      # resolves once; raises if refused
    with pinned(host, addresses):
        client.post(url, ...)                         # connects to addresses[0] (or the next)

A connection opened outside :func:`pinned` for its host is refused, so a code
path that forgets to pin fails closed instead of resolving on its own.

Kept-alive connections are reused per host name: such a connection was opened
to an address that passed the check when it was opened.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore
import httpx

from asyncevents.sinks.addresses import AllowList, IPAddress, allowed_addresses

__all__ = ["PinnedTransport", "PinningBackend", "checked_addresses", "pinned",
           "pinned_addresses"]

# Per thread (each worker thread has its own context): host -> addresses.
_PINS: ContextVar[Mapping[str, tuple[IPAddress, ...]] | None] = ContextVar(
    "asyncevents_pins", default=None)


def _key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def checked_addresses(host: str, allowed: AllowList) -> tuple[IPAddress, ...]:
    """Resolve ``host`` once and return its addresses if delivering there is allowed.

    Every address must be public or inside ``allowed``'s networks, unless the
    host name itself is allowed. Raises ``UnresolvableHost`` (the name does
    not resolve, perhaps only for now) or ``InvalidRecipient`` (refused).
    """
    return allowed_addresses(host, allowed)


@contextmanager
def pinned(host: str, addresses: Sequence[IPAddress]) -> Iterator[None]:
    """Within this block, connections to ``host`` go to ``addresses`` only."""
    token = _PINS.set({**(_PINS.get() or {}), _key(host): tuple(addresses)})
    try:
        yield
    finally:
        _PINS.reset(token)


def pinned_addresses(host: str) -> tuple[IPAddress, ...] | None:
    """The addresses pinned for ``host`` in this context (None: not pinned)."""
    return (_PINS.get() or {}).get(_key(host))


class PinningBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects to the pinned addresses of a host."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first pinned address of ``host`` that answers."""
        addresses = pinned_addresses(host)
        if not addresses:
            raise httpcore.ConnectError(
                f"no checked address for {host!r}: refusing to resolve it again")
        error: Exception | None = None
        for address in addresses:
            try:
                # An IP literal: the inner backend connects without any lookup.
                return self._inner.connect_tcp(str(address), port, timeout, local_address,
                                               socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Refused: webhooks go over TCP only."""
        raise httpcore.ConnectError("unix sockets are not a webhook destination")

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retries use it)."""
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport over a :class:`PinningBackend`.

    No proxy from the environment, ever; ``proxy`` (``ASYNCEVENTS_HTTP_PROXY``)
    sends every request through that proxy instead, and then the only
    connections are to the proxy, at its pinned addresses.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True,
                 limits: httpx.Limits | None = None,
                 backend: httpcore.NetworkBackend | None = None,
                 proxy: str | None = None) -> None:
        limits = limits or httpx.Limits()
        super().__init__(verify=verify, limits=limits, trust_env=False)
        # The pool httpx built, rebuilt with the same options plus the backend
        # (httpx has no argument for it).
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        if proxy:
            via = httpx.Proxy(proxy)  # userinfo in the URL becomes Proxy-Authorization
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(scheme=via.url.raw_scheme, host=via.url.raw_host,
                                       port=via.url.port, target=via.url.raw_path),
                proxy_auth=via.raw_auth, proxy_headers=via.headers.raw, ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend or PinningBackend(),
            )
            return
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend or PinningBackend(),
        )
