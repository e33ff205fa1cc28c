"""The Store facade: one object for every read and write, its queries in a module per concept."""

from __future__ import annotations

from asyncevents.core.store import migrate
from asyncevents.core.store.attempts import AttemptQueries
from asyncevents.core.store.crypto import TokenCipher
from asyncevents.core.store.dashboard import DashboardQueries
from asyncevents.core.store.deliveries import DeliveryQueries
from asyncevents.core.store.engine import make_engine
from asyncevents.core.store.health import HealthQueries
from asyncevents.core.store.idempotency import IdempotencyQueries
from asyncevents.core.store.keycheck import KeyCheckQueries
from asyncevents.core.store.limits import LimitQueries
from asyncevents.core.store.metrics import MetricsQueries
from asyncevents.core.store.search import SearchQueries
from asyncevents.core.store.sessions import SessionQueries
from asyncevents.core.store.stats import StatsQueries
from asyncevents.core.store.subscriptions import SubscriptionQueries
from asyncevents.core.store.tokens import TokenQueries
from asyncevents.core.store.workers import WorkerQueries
from asyncevents.errors import StoreError

__all__ = ["Store"]


class Store(
    SubscriptionQueries,
    DeliveryQueries,
    AttemptQueries,
    SearchQueries,
    TokenQueries,
    SessionQueries,
    IdempotencyQueries,
    MetricsQueries,
    WorkerQueries,
    DashboardQueries,
    StatsQueries,
    HealthQueries,
    LimitQueries,
    KeyCheckQueries,
):
    """Reads and writes subscriptions, deliveries, attempts, API tokens and idempotency keys.

    Nothing else in asyncevents opens a transaction: every query is a method
    here, written in the module of its concept.
    """

    @classmethod
    def open(cls, url: str, *, auto_migrate: bool | None = None,
             cipher: TokenCipher | None = None) -> Store:
        """Connect to ``url`` and check the schema (created on first use with SQLite).

        What it did to the schema, if anything, is :attr:`opened_migration`.
        """
        engine = make_engine(url)
        store = cls(engine, cipher)
        if auto_migrate is None:
            auto_migrate = engine.dialect.name == "sqlite"
        with store._errors():
            if not migrate.has_schema(engine):
                if not auto_migrate:
                    raise StoreError(
                        "the database has no asyncevents schema; run 'asyncevents migrate'"
                    )
                store._opened_migration = migrate.upgrade(engine)
            elif migrate.is_behind(engine):
                # An upgraded asyncevents on an older schema: SQLite catches up by itself
                # as it was created by itself; a server database waits for its operator.
                if not auto_migrate:
                    raise StoreError("the database schema is older than this asyncevents; "
                                     "run 'asyncevents migrate'")
                store._opened_migration = migrate.upgrade(engine)
        return store

    _opened_migration: migrate.Migration | None = None

    @property
    def opened_migration(self) -> migrate.Migration | None:
        """What :meth:`open` did to the schema: created or upgraded it (None: nothing)."""
        return self._opened_migration

    def migrate(self) -> migrate.Migration:
        """Create or upgrade the schema; what was done (:class:`~.migrate.Migration`)."""
        with self._errors():
            return migrate.upgrade(self.engine)

    def close(self) -> None:
        """Finish queued writes and release pooled connections."""
        self.engine.dispose()
