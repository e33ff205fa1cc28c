"""Fixtures for search tests: one throwaway database per backend and session.

PostgreSQL and MariaDB must be reachable (127.0.0.1:5432 as postgres,
127.0.0.1:3306 as root, or the URLs in ASYNCEVENTS_TEST_PG /
ASYNCEVENTS_TEST_MYSQL); when they are not, the tests fail, never skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from asyncevents.core.store import Store
from asyncevents.core.store.schema import attempts, deliveries, subscriptions

from .seed import Seeded, seed

BACKENDS = ["sqlite", "postgresql", "mariadb"]
PG_ADMIN = os.environ.get(
    "ASYNCEVENTS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN = os.environ.get("ASYNCEVENTS_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/")


@contextmanager
def temporary_database(backend: str, tmp: Path) -> Iterator[str]:
    """A new, empty database; dropped afterwards."""
    name = f"ae_search_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
        return
    admin_url = PG_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                # A case-insensitive default collation: search must still be exact.
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                                  "COLLATE utf8mb4_general_ci"))
        url = make_url(admin_url).set(database=name)
        if backend == "mariadb":
            url = url.update_query_dict({"charset": "utf8mb4"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@contextmanager
def open_store(backend: str, tmp: Path) -> Iterator[Store]:
    """A migrated store on a temporary database."""
    with temporary_database(backend, tmp) as url:
        store = Store.open(url, auto_migrate=True)
        try:
            yield store
        finally:
            store.close()


def wipe(store: Store) -> None:
    """Delete every row of the tables search reads."""
    with store.begin() as conn:
        for table in (attempts, deliveries, subscriptions):
            conn.execute(delete(table))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def seeded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A store holding the known deliveries of ``seed.py``; read-only."""
    with open_store(backend, tmp_path_factory.mktemp("seeded")) as store:
        yield seed(store)


@pytest.fixture(scope="session")
def scratch_db(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open_store(backend, tmp_path_factory.mktemp("scratch")) as store:
        yield store


@pytest.fixture
def scratch(scratch_db: Store) -> Store:
    """An empty store (shared per backend; wiped before each test)."""
    wipe(scratch_db)
    return scratch_db
