"""Failed authentications, counted per client address in a sliding window.

A wrong, expired or revoked bearer token, and a failed console login, count
as a failure of the address they came from. Once an address has failed
``limit`` times within ``window`` seconds, every authentication from it is
refused with a 429 and ``Retry-After`` until its oldest counted failure
leaves the window, whether its token is right or not (so the answer says
nothing about the token). Requests without a token, and tokens that are
right but lack a scope, count for nothing.

The counts live in this process (each server process counts on its own).
Memory is bounded: at most ``limit`` times per address, and at most
``max_addresses`` addresses, the ones that failed least recently forgotten
first. IPv6 addresses count by their /64 network, which one host usually
holds whole.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import structlog
from starlette.requests import HTTPConnection

__all__ = ["FailureThrottle", "client_address", "note_failure", "retry_after", "throttle_of"]

log = structlog.get_logger("asyncevents.api")

LIMIT = 10
"""Failures an address may have within ``WINDOW`` seconds."""
WINDOW = 60.0
"""The sliding window, in seconds."""
MAX_ADDRESSES = 10_000
"""Addresses tracked at most."""


class FailureThrottle:
    """Failure counts per address, thread-safe (sync routes run on a thread pool)."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW,
                 max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("limit, window and max_addresses must be positive")
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        # address -> its last ``limit`` failure times; least recently failed first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or ``None`` when it may now."""
        with self._lock:
            times = self._failures.get(address)
            if times is None or len(times) < self.limit:
                return None
            wait = times[0] + self.window - self._clock()
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, address: str) -> None:
        """Count a failure of ``address`` now."""
        now = self._clock()
        with self._lock:
            times = self._failures.pop(address, None)
            if times is None:
                times = deque(maxlen=self.limit)
            times.append(now)
            self._failures[address] = times  # now the most recent
            blocked = len(times) == self.limit and now - times[0] < self.window
            self._forget(now)
        if blocked:
            log.warning("authentication failures throttled", client=address,
                        failures=self.limit, window_seconds=self.window)

    def tracked(self) -> int:
        """How many addresses are counted now."""
        with self._lock:
            return len(self._failures)

    def _forget(self, now: float) -> None:
        """Drop addresses whose failures all left the window, then the oldest over the cap."""
        while self._failures:
            address, times = next(iter(self._failures.items()))
            if now - times[-1] < self.window and len(self._failures) <= self.max_addresses:
                break
            del self._failures[address]


def client_address(connection: HTTPConnection) -> str:
    """The address failures are counted by: the client's IP, or its /64 for IPv6."""
    host = connection.client.host if connection.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


_CREATING = threading.Lock()


def throttle_of(connection: HTTPConnection) -> FailureThrottle:
    """The throttle of the web application serving ``connection`` (made on first use)."""
    state = connection.app.state
    found = getattr(state, "auth_throttle", None)
    if found is None:
        with _CREATING:
            found = getattr(state, "auth_throttle", None)
            if found is None:
                found = state.auth_throttle = FailureThrottle()
    assert isinstance(found, FailureThrottle)
    return found


def retry_after(connection: HTTPConnection) -> int | None:
    """Seconds until the address of ``connection`` may authenticate again, or ``None``."""
    return throttle_of(connection).retry_after(client_address(connection))


def note_failure(connection: HTTPConnection) -> None:
    """Count a failed authentication against the address of ``connection``.

    Once per request, however often its credentials are checked.
    """
    state = connection.state
    if not getattr(state, "auth_failure_counted", False):
        state.auth_failure_counted = True
        throttle_of(connection).failed(client_address(connection))
