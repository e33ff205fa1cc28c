"""The tiers' machinery (tests/tiers.py): what it marks, and the fast tier's guard refusing."""

from __future__ import annotations

import socket
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from tests import tiers
from tests.conftest import require
from tests.helpers import drain, run_cli


def _item(fixtures: tuple[str, ...] = (), marks: tuple[str, ...] = (),
          **params: Any) -> Any:
    return SimpleNamespace(
        fixturenames=list(fixtures),
        callspec=SimpleNamespace(params=params) if params else None,
        get_closest_marker=lambda name: name if name in marks else None)


@pytest.mark.parametrize(("item", "server"), [
    (_item(("pg_url",)), True),
    (_item(("tmp_path", "redis_url")), True),
    (_item(("make_settings",), marks=("rabbitmq",)), True),
    (_item(("transport_settings",), transport_settings="sqla+postgresql"), True),
    (_item(("transport_settings",), transport_settings="amqp"), True),
    (_item(("database_url",), database_url="mysql"), True),
    (_item(("backend",), backend="mariadb"), True),
    (_item(("db",), db="sqlite-amqp"), True),
    (_item(("transport_settings",), transport_settings="sqla+sqlite"), False),
    (_item(("database_url",), database_url="sqlite"), False),
    (_item(("make_settings", "httpserver"), pattern="sales.order.*"), False),
])
def test_server_marking(item: Any, server: bool) -> None:
    assert tiers._needs_server(item) is server


def _calls_a_helper_that_runs_the_cli() -> None:
    run_cli("events", cwd=None)  # type: ignore[arg-type]


def _runs_a_worker_in_this_process() -> None:
    drain(None)  # type: ignore[arg-type]


class _Starter:
    def start(self) -> None:
        subprocess.Popen([sys.executable, "-c", "pass"])


def _builds_a_starter() -> _Starter:
    return _Starter()


@pytest.mark.parametrize(("function", "spawns"), [
    (run_cli, True),
    (_calls_a_helper_that_runs_the_cli, True),
    (_builds_a_starter, True),  # a class of ours whose method starts a process
    (_runs_a_worker_in_this_process, False),
    (drain, False),
    (tiers.tier, False),
])
def test_process_marking_follows_our_helpers(function: Any, spawns: bool) -> None:
    assert tiers.spawns(function) is spawns


def test_the_guard_refuses_servers_and_processes_and_puts_everything_back() -> None:
    connect, execute = socket.socket.connect, subprocess.Popen._execute_child  # type: ignore[attr-defined]
    with tiers.guarded():
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="server tier"):
            sock.connect(("127.0.0.1", 5432))
        with pytest.raises(PermissionError, match="started a process"):
            subprocess.run([sys.executable, "-c", "pass"], check=False)
        import psycopg

        with pytest.raises(psycopg.OperationalError, match="PostgreSQL"):
            psycopg.connect("postgresql://postgres@127.0.0.1/postgres")
        found = tiers.violations()
    assert len(found) == 3 and all("fast tier" in f for f in found)
    assert tiers.violations() == []
    # Outside the guard (or, in the fast tier, back to the outer guard's functions).
    assert socket.socket.connect is connect
    assert subprocess.Popen._execute_child is execute  # type: ignore[attr-defined]


def test_require_fails_in_the_fast_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tiers.TIER_VARIABLE, "fast")
    with pytest.raises(pytest.fail.Exception, match="belongs in the server tier"):
        require("127.0.0.1", 5432, "PostgreSQL")
    assert len(tiers.violations()) == 1
