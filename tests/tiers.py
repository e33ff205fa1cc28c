"""The test tiers: which tests need a server or start a process, and the fast tier's guard.

``tests/conftest.py`` calls :func:`mark` on every collected test and, when the
tier is ``fast`` (``ASYNCEVENTS_TEST_TIER=fast``, set by ``make test-fast``),
wraps each test in :func:`guarded`. The tiers (see CONTRIBUTING.md):

- fast: ``not server and not subprocess and not slow and not serial``;
- servers: ``(server or subprocess or slow) and not serial``, in parallel;
- serial: ``serial`` (the fault suite's short form restarts the services), alone.

A marker is never written by hand for the first two: ``server`` comes from the
fixtures and parameters a test uses, ``subprocess`` from the code it runs
(followed through the helpers of ``tests`` and ``faults``). Where that reading
misses something (a server reached from library code, a process started by
the package itself), the fast tier's guard refuses the connection or the
process and fails the test, naming the tier it belongs in.
"""

from __future__ import annotations

import errno
import inspect
import multiprocessing.util
import os
import re
import socket
import subprocess
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

TIER_VARIABLE = "ASYNCEVENTS_TEST_TIER"

#: Fixtures that hand a test a server (each calls ``require()``).
SERVER_FIXTURES = frozenset({"pg_url", "pg_migrated_url", "pg_admin_url", "mysql_url",
                             "amqp_url", "redis_url"})
#: Hand-written markers that mean a server.
SERVER_MARKS = frozenset({"postgres", "mysql", "rabbitmq"})
#: A parameter naming one of these (``postgresql``, ``sqla+postgresql``, ``mysql-amqp``...)
#: picks a server: ``database_url``, ``transport_settings``, the search ``backend``,
#: ``app_on``'s ``store``...
SERVER_WORDS = frozenset({"postgresql", "postgres", "pg", "mysql", "mariadb", "amqp",
                          "rabbitmq", "redis", "cluster"})
#: The servers' ports on 127.0.0.1 (and the fault suite's RabbitMQ cluster).
SERVER_PORTS = {5432: "PostgreSQL", 3306: "MariaDB", 5672: "RabbitMQ", 6379: "Redis",
                4222: "NATS", 1883: "Mosquitto", 5681: "RabbitMQ (cluster)",
                5682: "RabbitMQ (cluster)", 5683: "RabbitMQ (cluster)"}

#: Modules whose use starts a process, and the ``os`` functions that do.
_SPAWN_MODULES = ("subprocess", "multiprocessing", "concurrent.futures.process", "pty")
_SPAWN_OS = frozenset({"fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp",
                       "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve",
                       "spawnvp", "spawnvpe", "execv", "execve", "execl", "execle",
                       "execlp", "execlpe", "execvp", "execvpe"})
#: Our own code, read name by name; anything else (the package, libraries) is not followed.
_OURS = ("tests", "faults")


def tier() -> str:
    """The tier being run (``fast``), or ``""`` when the run is not a tier."""
    return os.environ.get(TIER_VARIABLE, "")


# --- marking -----------------------------------------------------------------------------


def mark(items: list[pytest.Item]) -> None:
    """Add ``server`` and ``subprocess`` to the items that need them."""
    for item in items:
        if _needs_server(item):
            item.add_marker(pytest.mark.server)
        if _starts_processes(item):
            item.add_marker(pytest.mark.subprocess)


def _needs_server(item: pytest.Item) -> bool:
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if any(item.get_closest_marker(name) for name in SERVER_MARKS):
        return True
    callspec = getattr(item, "callspec", None)
    values = list(callspec.params.values()) if callspec is not None else []
    return any(isinstance(v, str) and SERVER_WORDS & set(re.split(r"[^a-z0-9]+", v.lower()))
               for v in values)


def _starts_processes(item: pytest.Item) -> bool:
    functions: list[Any] = [getattr(item, "obj", None)]
    info = getattr(item, "_fixtureinfo", None)
    if info is not None:
        for name in getattr(item, "fixturenames", ()):
            functions.extend(d.func for d in info.name2fixturedefs.get(name, ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:  # a parameter may be a scenario function (the fault suite)
        for value in callspec.params.values():
            functions.extend(v for v in (value if isinstance(value, tuple) else (value,))
                             if callable(v) or hasattr(v, "__dict__"))
    return any(spawns(f) for f in functions if f is not None)


_known_spawning: set[int] = set()
_known_quiet: set[int] = set()


def spawns(obj: Any) -> bool:
    """Whether calling ``obj`` may start a process, as far as our own code shows."""
    key = id(obj)
    if key in _known_spawning:
        return True
    if key in _known_quiet:
        return False
    found = _spawns(obj, set())
    (_known_spawning if found else _known_quiet).add(key)
    return found


def _ours(module: str | None) -> bool:
    return bool(module) and str(module).split(".")[0] in _OURS


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _spawns(obj: Any, seen: set[int]) -> bool:
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if id(obj) in _known_spawning:
        return True
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    if isinstance(obj, property):
        return any(_spawns(f, seen) for f in (obj.fget, obj.fset) if f is not None)
    if isinstance(obj, type):
        if not _ours(obj.__module__):
            return False
        return any(_spawns(v, seen) for v in vars(obj).values()
                   if isinstance(v, types.FunctionType | staticmethod | classmethod | property))
    if not isinstance(obj, types.FunctionType):
        # A dataclass instance as a parameter (a fault), a partial...: its functions.
        if _ours(type(obj).__module__) and hasattr(obj, "__dict__"):
            return any(_spawns(v, seen) for v in vars(obj).values() if callable(v))
        return False
    obj = inspect.unwrap(obj)
    names = _code_names(obj.__code__)
    scope = obj.__globals__
    for name in names:
        if name not in scope:
            continue  # an attribute name, a local, or a builtin
        value = scope[name]
        if _is_spawner(value, names):
            return True
        if isinstance(value, types.ModuleType):
            if _ours(value.__name__) and any(_spawns(getattr(value, n), seen)
                                             for n in names if hasattr(value, n)):
                return True
            continue
        if _ours(getattr(value, "__module__", None)) and _spawns(value, seen):
            return True
    for cell in obj.__closure__ or ():
        try:
            content = cell.cell_contents
        except ValueError:
            continue
        if isinstance(content, types.FunctionType) and _spawns(content, seen):
            return True
    return False


def _is_spawner(value: Any, names: set[str]) -> bool:
    if isinstance(value, types.ModuleType):
        if value.__name__.startswith(_SPAWN_MODULES):
            return True
        return value is os and bool(names & _SPAWN_OS)
    module = getattr(value, "__module__", None) or ""
    if module.startswith(_SPAWN_MODULES):
        return True  # from subprocess import run, Popen...
    return module in ("os", "posix") and getattr(value, "__name__", "") in _SPAWN_OS


# --- the fast tier's guard ---------------------------------------------------------------

_violations: list[str] = []


def violations() -> list[str]:
    """What the running test did that the fast tier refuses (emptied by the call)."""
    found = list(_violations)
    _violations.clear()
    return found


def refuse(what: str) -> str:
    """Record ``what`` as this test's violation; the message to raise with."""
    message = (f"{what}, but this test runs in the fast tier ({TIER_VARIABLE}=fast), which "
               "has no server and starts no process: it belongs in the server tier "
               "(use a server fixture: pg_url, mysql_url, amqp_url, redis_url), or the "
               "marking in tests/tiers.py missed how it gets there")
    _violations.append(message)
    return message


def _address_port(address: Any) -> int | None:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return int(address[1])
    return None


@contextmanager
def guarded() -> Iterator[None]:
    """Refuse connections to the servers' ports and new processes while a test runs."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_execute = subprocess.Popen._execute_child  # type: ignore[attr-defined]
    real_spawnv = multiprocessing.util.spawnv_passfds
    real_os = {name: getattr(os, name) for name in _SPAWN_OS if hasattr(os, name)}

    def check_address(address: Any) -> None:
        port = _address_port(address)
        if port in SERVER_PORTS:
            raise ConnectionRefusedError(errno.ECONNREFUSED, refuse(
                f"it connected to {SERVER_PORTS[port]} ({address[0]}:{port})"))

    def connect(self: socket.socket, address: Any) -> None:
        check_address(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check_address(address)
        return real_connect_ex(self, address)

    def execute_child(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, refuse(f"it started a process ({args!r})"))

    def spawnv_passfds(path: Any, args: Any, passfds: Any) -> int:
        raise PermissionError(errno.EPERM, refuse(f"it started a process ({args!r})"))

    def forbidden(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(errno.EPERM, refuse(f"it called os.{name}{args!r}"))
        return call

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    subprocess.Popen._execute_child = execute_child  # type: ignore[attr-defined]
    multiprocessing.util.spawnv_passfds = spawnv_passfds
    for name in real_os:
        setattr(os, name, forbidden(name))
    psycopg_patched = _guard_psycopg()
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        subprocess.Popen._execute_child = real_execute  # type: ignore[attr-defined]
        multiprocessing.util.spawnv_passfds = real_spawnv
        for name, function in real_os.items():
            setattr(os, name, function)
        for owner, name, function in psycopg_patched:
            setattr(owner, name, function)


def _guard_psycopg() -> list[tuple[Any, str, Any]]:
    """libpq connects in C, past ``socket``: refuse psycopg connections to port 5432."""
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:  # pragma: no cover - psycopg is in the test extra
        return []
    real = psycopg.Connection.__dict__["connect"]
    real_connect = psycopg.connect

    def port_of(conninfo: str, kwargs: dict[str, Any]) -> int:
        params = conninfo_to_dict(make_conninfo(conninfo, **{
            k: v for k, v in kwargs.items() if k in ("host", "port", "dbname", "user")}))
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
        return int(port.split(",")[0]) if port.split(",")[0].isdigit() else 5432

    def check(conninfo: str, kwargs: dict[str, Any]) -> None:
        if port_of(conninfo, kwargs) == 5432:
            raise psycopg.OperationalError(refuse("it connected to PostgreSQL (port 5432)"))

    def connect(conninfo: str = "", **kwargs: Any) -> Any:
        check(conninfo, kwargs)
        return real_connect(conninfo, **kwargs)

    def class_connect(cls: Any, conninfo: str = "", **kwargs: Any) -> Any:
        check(conninfo, kwargs)
        return real.__func__(cls, conninfo, **kwargs)

    psycopg.connect = connect  # type: ignore[assignment]
    psycopg.Connection.connect = classmethod(class_connect)  # type: ignore[method-assign,assignment]
    return [(psycopg, "connect", real_connect), (psycopg.Connection, "connect", real)]


__all__ = ["SERVER_FIXTURES", "SERVER_PORTS", "TIER_VARIABLE", "guarded", "mark", "refuse",
           "spawns", "tier", "violations"]
