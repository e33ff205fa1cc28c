"""The HTTP sink's asynchronous client: aiohttp, pinned to checked addresses.

The worker's engine awaits ``HttpSink.deliver_async`` on its event loop. The
client was chosen by measurement (``python -m bench.http_clients``): aiohttp
costs about a quarter of the CPU of httpx per request on this kind of
machine, and httpx's ``AsyncClient`` more than its synchronous client. The
guarantees are the synchronous client's (:mod:`.pinning`): connections go
only to the addresses that passed the guard (:class:`PinnedResolver` answers
from the pins, never from DNS; an IP literal is connected to as is), no proxy
from the environment, no cookies, no redirects followed, bodies read raw and
inflated only up to the excerpt.
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from asyncevents.sinks.pinning import pinned_addresses

__all__ = ["PinnedResolver", "new_session", "read_excerpt"]


class PinnedResolver(AbstractResolver):
    """Answers a host name with the addresses pinned for it, or refuses."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """The pinned addresses of ``host``; an ``OSError`` when none were checked."""
        addresses = pinned_addresses(host)
        if not addresses:
            raise OSError(f"no checked address for {host!r}: refusing to resolve it again")
        return [{"hostname": host, "host": str(a), "port": port,
                 "family": socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for a in addresses]

    async def close(self) -> None:
        """Nothing to release."""


def new_session(ssl_context: ssl.SSLContext | None, connections: int) -> aiohttp.ClientSession:
    """A session for webhook deliveries (call it inside the running event loop)."""
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=0, resolver=PinnedResolver(),
        use_dns_cache=False, ssl=ssl_context if ssl_context is not None else True,
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )


async def read_excerpt(response: aiohttp.ClientResponse, limit: int, budget: float,
                       inflater: Callable[[], Any] | None) -> bytes:
    """At most ``limit`` bytes of the body (inflated), within ``budget`` seconds."""
    inflate = inflater() if inflater is not None else None
    data = b""
    deadline = time.monotonic() + budget
    try:
        while len(data) < limit:
            if time.monotonic() > deadline:
                break
            # Each read is bounded by the session's read timeout; the budget
            # by this check between reads (as the synchronous client does).
            chunk = await response.content.readany()
            if not chunk:
                break
            if inflate is not None:
                chunk = inflate.decompress(chunk, limit - len(data))
            data += chunk
    except (TimeoutError, aiohttp.ClientError):
        pass  # the status already arrived; a body cut short does not change it
    except zlib.error:
        raise
    return data[:limit]
