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
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from asyncevents.errors import ConfigError, InvalidRecipient, UnverifiedRecipient

__all__ = ["AllowList", "IPAddress", "UnresolvableHost", "check_host", "is_public", "resolve"]

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


def check_host(host: str, allowed: AllowList) -> None:
    """Raise ``InvalidRecipient`` unless delivering to ``host`` is safe or allowed.

    Every address the host resolves to must be public or inside an allowed
    network: checking only the first would let a name with one public and
    one private record through.
    """
    if allowed.allows_name(host):
        return
    for address in resolve(host):
        if not is_public(address) and not allowed.allows_address(address):
            shown = host if host == str(address) else f"{host} ({address})"
            raise InvalidRecipient(
                f"{shown} is a private, loopback or otherwise internal address; "
                "add it to allowed_networks (ASYNCEVENTS_ALLOWED_NETWORKS) to permit it"
            )
