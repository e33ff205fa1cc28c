"""Fixtures for the guard tests: a fake DNS and settings isolated from the machine."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo


@dataclass
class FakeDNS:
    """Answers for made-up names; each name answers its lists in turn (the last one sticks)."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def set(self, name: str, *rounds: list[str]) -> None:
        """``name`` answers ``rounds[0]`` first, then ``rounds[1]``..."""
        self.answers[name] = [list(r) for r in rounds]

    def lookups(self, name: str) -> int:
        """How often ``name`` was resolved."""
        return self.asked.count(name)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(host, str) or host not in self.answers:
            # IP literals (and anything else) resolve for real, without DNS.
            return _real_getaddrinfo(host, port, *args, **kwargs)
        self.asked.append(host)
        rounds = self.answers[host]
        records = rounds.pop(0) if len(rounds) > 1 else rounds[0]
        numeric = int(port) if isinstance(port, int | str) and str(port).isdigit() else 0
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, numeric, 0, 0)) if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, numeric))
            for a in records
        ]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    """A DNS for made-up names only; no test asks a real resolver about a real name."""
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@pytest.fixture
def sink_settings(make_settings: Callable[..., Any]) -> Callable[..., Any]:
    """Settings for a sink: short timeouts; ``allowed_networks`` as given (default loopback)."""

    def build(**overrides: Any) -> Any:
        values: dict[str, Any] = {"http_timeout": 3.0, "http_connect_timeout": 2.0}
        values.update(overrides)
        return make_settings(**values)

    return build
