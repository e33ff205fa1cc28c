from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from asyncevents.errors import ConfigError, InvalidRecipient
from asyncevents.sinks.addresses import (
    AllowList,
    UnresolvableHost,
    check_host,
    is_public,
    resolve,
)

NOBODY = AllowList()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A DNS that answers from a dict, so no test asks a real resolver about a real name."""
    records: dict[str, list[str]] = {}

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, 0, 0, 0) if ":" in a else (a, 0),
            )
            for a in records[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "169.254.169.254",  # cloud metadata service
        "100.64.0.1",  # carrier-grade NAT (shared address space)
        "100.100.100.200",  # Alibaba Cloud metadata, inside 100.64.0.0/10
        "224.0.0.1",  # multicast: is_global is True for it, but it is no receiver
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "198.18.0.1",  # benchmarking
        "192.0.2.1",  # documentation
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # deprecated IPv4-compatible form
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1: is_global is True for it
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
     "2002:808:808::1"],
)
def test_global_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_ip_literal_resolves_to_itself_without_dns(fake_dns: dict[str, list[str]]) -> None:
    assert resolve("10.0.0.1") == [ipaddress.ip_address("10.0.0.1")]
    assert resolve("[::1]") == [ipaddress.ip_address("::1")]


def test_resolve_deduplicates(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["twice.test"] = ["93.184.216.34", "93.184.216.34", "2606:4700::1"]
    assert [str(a) for a in resolve("twice.test")] == ["93.184.216.34", "2606:4700::1"]


def test_public_name_passes(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["hooks.example.com"] = ["93.184.216.34"]
    check_host("hooks.example.com", NOBODY)


def test_one_private_record_among_public_ones_is_refused(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["mixed.test"] = ["93.184.216.34", "10.1.2.3"]
    with pytest.raises(InvalidRecipient, match=r"mixed\.test \(10\.1\.2\.3\)"):
        check_host("mixed.test", NOBODY)


def test_unresolvable_name_is_refused_clearly(fake_dns: dict[str, list[str]]) -> None:
    with pytest.raises(UnresolvableHost, match="does not resolve") as caught:
        check_host("nowhere.invalid", NOBODY)
    assert isinstance(caught.value, InvalidRecipient)
    assert "\n" not in str(caught.value)


def test_localhost_resolving_to_loopback_is_refused_unless_allowed(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["localhost"] = ["127.0.0.1", "::1"]
    with pytest.raises(InvalidRecipient, match="allowed_networks"):
        check_host("localhost", NOBODY)
    # ::1 is outside 127.0.0.0/8, so allowing the IPv4 network is not enough...
    with pytest.raises(InvalidRecipient, match="::1"):
        check_host("localhost", AllowList.parse(["127.0.0.0/8"]))
    check_host("localhost", AllowList.parse(["127.0.0.0/8", "::1/128"]))
    # ...while allowing the name allows whatever it resolves to.
    check_host("localhost", AllowList.parse(["LocalHost."]))


def test_real_localhost_is_refused_by_default() -> None:
    # The machine's own resolver; localhost never leaves the host.
    with pytest.raises(InvalidRecipient):
        check_host("localhost", NOBODY)


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("127.0.0.1", ["127.0.0.0/8"], True),
        ("10.0.0.7", ["10.0.0.0/24"], True),
        ("10.0.1.7", ["10.0.0.0/24"], False),
        ("10.0.0.7", ["10.0.0.7"], True),  # a bare address is a /32
        ("::ffff:127.0.0.1", ["127.0.0.0/8"], True),  # mapped form judged as its IPv4
        ("::ffff:127.0.0.1", [], False),
        ("169.254.169.254", ["127.0.0.0/8"], False),
        ("fd00::5", ["fd00::/8"], True),
    ],
)
def test_allowed_networks(host: str, allowed: list[str], ok: bool) -> None:
    allow = AllowList.parse(allowed)
    if ok:
        check_host(host, allow)
    else:
        with pytest.raises(InvalidRecipient):
            check_host(host, allow)


def test_allow_list_parsing() -> None:
    allow = AllowList.parse([" 10.0.0.0/8 ", "", "internal.example.", "192.168.1.1"])
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8", "192.168.1.1/32"]
    assert allow.names == frozenset({"internal.example"})


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "nonsense/8"])
def test_malformed_cidr_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError, match="allowed_networks"):
        AllowList.parse([entry])
