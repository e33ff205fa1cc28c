"""The address guard: keep deliveries away from private and internal hosts (SSRF).

A subscriber chooses the URL, so without a guard anyone who may subscribe
can make the worker call the cloud metadata service, the database port or an
admin console on the internal network. Only globally routable unicast
addresses pass, unless the operator allows a network or a host name in
``allowed_networks`` (``ASYNCEVENTS_ALLOWED_NETWORKS``).

A name that does not resolve at all is ``UnresolvableHost``, an
``UnverifiedRecipient``: on subscribe it is accepted with a warning (DNS may
be down, or the name exists only where the workers run), and like every
recipient it is checked again before each delivery.

The guard is public API for every sink that takes a host or a URL (exported by
``asyncevents``): :func:`check_address` in ``validate_recipient``, and
:func:`guarded_addresses` when connecting, so that the connection goes to the
addresses that were checked and not to a second DNS answer (pinning)::

    def validate_recipient(self, recipient: str) -> None:
        check_address(recipient, self.settings)        # InvalidRecipient if private

    def _connect(self, host: str, port: int) -> socket.socket:
        for address in guarded_addresses(host, port, self.settings):
            ...                                        # connect to address.host (an IP)
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from asyncevents.errors import ConfigError, InvalidRecipient, UnverifiedRecipient

if TYPE_CHECKING:
    from asyncevents.core.settings import Settings

__all__ = ["Address", "AllowList", "IPAddress", "UnresolvableHost", "allowed_addresses",
           "check_address", "check_host", "guarded_addresses", "host_of", "is_public",
           "resolve"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IPv4-compatible IPv6 (deprecated), which also holds :: and ::1.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class UnresolvableHost(UnverifiedRecipient):
    """The host name does not resolve (perhaps only for now: DNS can be down)."""


@dataclass(frozen=True)
class AllowList:
    """Networks and host names that may be reached although they are not public."""

    networks: tuple[_Network, ...] = ()
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Split ``allowed_networks`` entries into CIDRs and host names.

        An entry with a ``/`` or that reads as an IP address is a network;
        anything else is a host name. A malformed CIDR is a ``ConfigError``
        rather than a host name that silently never matches.
        """
        networks: list[_Network] = []
        names: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if "/" in entry:
                    raise ConfigError(
                        f"allowed_networks: {entry!r} is not a valid network (CIDR)"
                    ) from None
                names.add(_normal_name(entry))
        return cls(tuple(networks), frozenset(names))

    def allows_name(self, host: str) -> bool:
        """Whether ``host`` is allowed by name, whatever it resolves to."""
        return _normal_name(host) in self.names

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` lies in one of the allowed networks."""
        address = _unmapped(address)
        return any(address in network for network in self.networks)


def _normal_name(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address.

    IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo)
    are judged by that IPv4 address too, since the kernel or a gateway may
    route them to it.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in _IPV4_COMPATIBLE:
            return False
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        if address.teredo is not None and not is_public(address.teredo[1]):
            return False
    # is_global alone lets multicast (224.0.0.0/4, ff00::/8) through.
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_link_local
        and not address.is_loopback
        and not address.is_unspecified
    )


def resolve(host: str) -> list[IPAddress]:
    """Every address ``host`` stands for: itself if an IP literal, else what DNS says.

    Raises ``UnresolvableHost`` when the name does not resolve, and
    ``InvalidRecipient`` when it can never be a host name.
    """
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except UnicodeError:
        # No DNS answer can ever make this name valid: refused, not unresolved.
        raise InvalidRecipient(f"host {host!r} is not a valid host name") from None
    except socket.gaierror as exc:
        raise UnresolvableHost(f"host {host!r} does not resolve ({exc.strerror})") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UnresolvableHost(f"host {host!r} does not resolve (no addresses)")
    return found


def allowed_addresses(host: str, allowed: AllowList) -> tuple[IPAddress, ...]:
    """Resolve ``host`` once and return its addresses if delivering there is allowed.

    Every address the host resolves to must be public or inside an allowed
    network (checking only the first would let a name with one public and
    one private record through), unless the name itself is allowed. Raises
    ``UnresolvableHost`` (perhaps only for now) or ``InvalidRecipient``.
    """
    addresses = tuple(resolve(host))
    if allowed.allows_name(host):
        return addresses
    for address in addresses:
        if not is_public(address) and not allowed.allows_address(address):
            bare = host.strip("[]").rstrip(".").lower()
            shown = host if bare == str(address) else f"{host} ({address})"
            raise InvalidRecipient(
                f"{shown} is a private, loopback or otherwise internal address; "
                "add it to allowed_networks (ASYNCEVENTS_ALLOWED_NETWORKS) to permit it"
            )
    return addresses


def check_host(host: str, allowed: AllowList) -> None:
    """Raise ``InvalidRecipient`` unless delivering to ``host`` is safe or allowed."""
    allowed_addresses(host, allowed)


class Address(NamedTuple):
    """An address that passed the guard: an IP literal and a port, ready to connect to.

    A tuple ``(host, port)``, so ``socket.create_connection(address)`` takes it.
    """

    host: str
    port: int

    @property
    def netloc(self) -> str:
        """``host:port`` as a URL writes it (``[2001:db8::1]:4222`` for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=64)
def _allow_list(entries: tuple[str, ...]) -> AllowList:
    return AllowList.parse(entries)


def host_of(host_or_url: str) -> str:
    """The host of ``scheme://[user@]host[:port]/...``, ``host:port``, ``[v6]:port`` or a
    bare host (an IPv6 literal with or without brackets); ``InvalidRecipient`` if none."""
    text = host_or_url.strip()
    try:
        ipaddress.ip_address(text.strip("[]"))
        return text.strip("[]")
    except ValueError:
        pass
    try:
        host = urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidRecipient(f"no host in {_shown(text)}")
    return host


def _shown(text: str) -> str:
    # Never the userinfo: a URL may carry a password there.
    if "@" in text and "://" in text:
        scheme, _, rest = text.partition("://")
        text = f"{scheme}://***@{rest.rpartition('@')[2]}"
    return repr(text[:200])


def check_address(host_or_url: str, settings: Settings) -> tuple[IPAddress, ...]:
    """Raise ``InvalidRecipient`` unless a sink may deliver to ``host_or_url``'s host.

    For a sink's ``validate_recipient``: the host (of a URL such as
    ``amqp://user@broker:5672/vhost``, of ``host:port``, or given alone) is
    resolved, and every address must be public unless
    ``settings.allowed_networks`` (``ASYNCEVENTS_ALLOWED_NETWORKS``) opens it,
    by network or by name. Loopback, private networks, link-local (the cloud
    metadata service at 169.254.169.254), multicast and reserved ranges are
    refused, also behind a host name. A name that does not resolve raises
    ``UnresolvableHost``, an ``UnverifiedRecipient``: subscribing goes ahead
    with a warning. Returns the addresses checked.
    """
    return allowed_addresses(host_of(host_or_url), _allow_list(tuple(settings.allowed_networks)))


def guarded_addresses(host: str, port: int, settings: Settings) -> list[Address]:
    """The addresses to connect to for ``host``, resolved once and each checked.

    For a sink's connection code, called when it opens a connection: connect
    to these (IP literals) rather than to ``host``, so that DNS cannot answer
    a public address to the check and an internal one to the connect
    (rebinding). Keep ``host`` for TLS (SNI, certificate checks) and for any
    ``Host`` header. Raises as :func:`check_address` does; a sink turns
    ``InvalidRecipient`` into a failure that is not retried.
    """
    return [Address(str(address), port)
            for address in check_address(host, settings)]
