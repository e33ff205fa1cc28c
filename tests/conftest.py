"""Shared fixtures: real services on 127.0.0.1, fresh databases, isolated settings.

A test that needs PostgreSQL, MariaDB, RabbitMQ or Redis fails (never skips)
when the service is down: CI must run the real suite.

The tiers (``make test-fast``, ``make test-servers``, ``make test-serial``; see
CONTRIBUTING.md) come from markers this file sets itself at collection, so no
test has to remember them:

- ``server``: the test uses a server fixture (``pg_url``, ``mysql_url``,
  ``amqp_url``, ``redis_url``, ``pg_migrated_url``), or one of its parameters
  names a server (``postgresql``, ``mysql``, ``amqp``...: ``database_url``,
  ``transport_settings``, the search ``backend``, a ``store`` parameter), or it
  carries ``postgres``/``mysql``/``rabbitmq``.
- ``subprocess``: the test, one of its fixtures, or a helper of ``tests``/``faults``
  they call (followed name by name through the code) starts a process
  (``subprocess``, ``multiprocessing``, ``os.fork``/``system``/``spawn*``...).

The fast tier runs with ``ASYNCEVENTS_TEST_TIER=fast``, which turns the markers
into promises: ``require()`` fails, a connection to a server's port or a new
process is refused and fails the test, saying which tier it belongs in. So a
test the markers missed fails in the fast tier instead of quietly using a server.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests import tiers

PG_ADMIN = os.environ.get("ASYNCEVENTS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("ASYNCEVENTS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/")
AMQP_URL = os.environ.get("ASYNCEVENTS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("ASYNCEVENTS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require(host: str, port: int, what: str) -> None:
    """Fail the test when a service is not listening (or when the tier has no servers)."""
    if tiers.tier() == "fast":
        pytest.fail(tiers.refuse(f"it needs {what} (require() for {host}:{port})"))
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"{what} is not reachable on {host}:{port} ({exc}); "
                    "start it (see .ci/run) — tests never skip a missing service")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``server`` and ``subprocess`` markers (see ``tests/tiers.py``)."""
    tiers.mark(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """In the fast tier, no test reaches a server or starts a process (see ``tests/tiers.py``)."""
    if tiers.tier() != "fast":
        return (yield)
    with tiers.guarded():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[pytest.TestReport]:
    """A phase in which the fast tier's guard refused something fails, whatever it caught."""
    report: pytest.TestReport = yield
    found = tiers.violations()
    if found and report.outcome != "failed":
        report.outcome = "failed"
        report.longrepr = "\n".join(found)
    return report


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ASYNCEVENTS_* variable or asyncevents.toml from the developer leaks in."""
    for key in list(os.environ):
        if key.startswith("ASYNCEVENTS_") and not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _fresh_database(admin_url: str, name: str, kind: str, template: str | None = None
                    ) -> Iterator[str]:
    """A new database ``name`` (a copy of ``template`` when given), dropped afterwards.

    Names carry a random part, so parallel workers (``-n``) and concurrent runs never meet.
    """
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"
                             + (f" TEMPLATE {template}" if template else "")))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with engine.connect() as conn:
            if kind == "postgresql":
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    require("127.0.0.1", 5432, "PostgreSQL")
    yield from _fresh_database(PG_ADMIN, f"ae_test_{uuid.uuid4().hex[:10]}", "postgresql")


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """A database migrated to head once per test process, copied by ``pg_migrated_url``.

    Nothing connects to it after the migration (PostgreSQL copies a template only when
    it has no session), and each xdist worker has its own.
    """
    require("127.0.0.1", 5432, "PostgreSQL")
    from asyncevents.core.store import Store

    for url in _fresh_database(PG_ADMIN, f"ae_tmpl_{uuid.uuid4().hex[:10]}", "postgresql"):
        Store.open(url, auto_migrate=True).close()  # what 'asyncevents migrate' does
        yield str(sa.engine.make_url(url).database)


@pytest.fixture
def pg_migrated_url(_pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, already migrated to head (a copy of the
    session's template: CREATE DATABASE ... TEMPLATE costs less than running the migrations)."""
    require("127.0.0.1", 5432, "PostgreSQL")
    yield from _fresh_database(PG_ADMIN, f"ae_test_{uuid.uuid4().hex[:10]}", "postgresql",
                               template=_pg_template)


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh MariaDB database for this test."""
    require("127.0.0.1", 3306, "MariaDB")
    yield from _fresh_database(MYSQL_ADMIN, f"ae_test_{uuid.uuid4().hex[:10]}", "mysql")


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """PostgreSQL's admin URL, for a test that makes and drops databases of its own."""
    require("127.0.0.1", 5432, "PostgreSQL")
    return PG_ADMIN


@pytest.fixture
def amqp_url() -> str:
    """RabbitMQ on 127.0.0.1."""
    require("127.0.0.1", 5672, "RabbitMQ")
    return AMQP_URL


@pytest.fixture
def redis_url() -> str:
    """Redis on 127.0.0.1 (database 0; each test's keys carry its own queue prefix)."""
    require("127.0.0.1", 6379, "Redis")
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each supported database in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    fixture = "pg_url" if request.param == "postgresql" else "mysql_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings for one test: its own queues, a temporary SQLite store, loopback allowed.

    On a server database, a ``secret_key`` too (workers refuse to start without one).
    """
    from asyncevents.core.settings import Settings

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "transport_url": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
            "database_url": f"sqlite:///{tmp_path / 'store.db'}",
            "queue_prefix": f"t{uuid.uuid4().hex[:12]}",
            "allowed_networks": ["127.0.0.0/8"],
            "strict_events": False,
            "polling_interval": 0.05,
        }
        values.update(overrides)
        if not str(values["database_url"]).startswith("sqlite"):
            # A server database's tokens need a key (a SQLite store keeps its own).
            values.setdefault("secret_key", "the test suite's token key")
        return Settings(**values)

    return build


@pytest.fixture(params=["sqla+sqlite", "amqp", "sqla+postgresql"])
def transport_settings(request: pytest.FixtureRequest, make_settings: Callable[..., Any],
                       tmp_path: Path) -> Iterator[Any]:
    """Settings for each real transport in turn (the store follows the transport's database)."""
    kind = request.param
    if kind == "amqp":
        settings = make_settings(transport_url=request.getfixturevalue("amqp_url"))
    elif kind == "sqla+postgresql":
        url = request.getfixturevalue("pg_migrated_url")  # as 'asyncevents migrate' leaves it
        settings = make_settings(transport_url=f"sqla+{url}", database_url=url)
    else:
        settings = make_settings()
    yield settings
    if kind == "amqp":
        from tests.helpers import delete_amqp_queues

        delete_amqp_queues(settings)
