from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from asyncevents.core.clock import utcnow
from asyncevents.core.store import NewAttempt, Store
from asyncevents.core.store.schema import metadata, only_elsewhere
from asyncevents.errors import NotFound, StoreError


@pytest.fixture
def store(database_url: str) -> Store:
    s = Store.open(database_url, auto_migrate=True)
    yield s
    s.close()


def test_migrations_match_the_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(context, metadata)
                if not (isinstance(d, tuple) and "alembic_version" in str(d))
                and not (isinstance(d, tuple) and d[0] == "add_index"
                         and only_elsewhere(d[1].name, conn.dialect.name))]
    assert diff == []


def test_subscription_lifecycle(store: Store) -> None:
    sub = store.create_subscription(event_name="sales.*", sink="http",
                                    recipient="http://127.0.0.1/x", token="s3cret",
                                    metadata={"team": "a"})
    assert store.get_subscription(sub.id).token == "s3cret"
    assert "token" not in sub.public() and "s3cret" not in repr(sub)
    assert store.update_subscription(sub.id, active=False).active is False
    assert [s.id for s in store.list_subscriptions(active=False)] == [sub.id]
    store.delete_subscription(sub.id)
    assert store.list_subscriptions() == []
    with pytest.raises(NotFound):
        store.get_subscription(sub.id)
    assert store.get_subscription(sub.id, deleted=True).active is False


def test_deliveries_are_unique_per_event_and_subscription(store: Store) -> None:
    subs = [store.create_subscription(event_name="a", sink="http", recipient=f"http://h/{i}",
                                      token="t") for i in range(3)]
    kwargs = dict(event_id="e-1", event_name="a", published_at=utcnow(),
                  payload={"n": 1, "items": [{"sku": "X"}]})
    first = store.ensure_deliveries(targets=subs[:2], **kwargs)
    again = store.ensure_deliveries(targets=subs, **kwargs)
    assert [d.id for d in again[:2]] == [d.id for d in first]
    assert len({d.id for d in again}) == 3
    assert again[0].payload == {"n": 1, "items": [{"sku": "X"}]}


def test_attempts_are_numbered_and_times_keep_microseconds(store: Store) -> None:
    sub = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                    token="t")
    (delivery,) = store.ensure_deliveries(event_id="e", event_name="a", published_at=utcnow(),
                                          payload={}, targets=[sub])
    start = utcnow()
    for n, success in enumerate([False, False, True]):
        status = "delivered" if success else "retrying"
        number = store.record_attempt(delivery.id, NewAttempt(
            started_at=start + timedelta(microseconds=n * 7), duration_ms=1.5, success=success,
            status_code=200 if success else 500, response="ok", error=None, status=status,
            next_attempt_at=None if success else utcnow() + timedelta(seconds=1),
        ))
        assert number == n + 1
    attempts = store.list_attempts(delivery.id)
    assert [a.number for a in attempts] == [1, 2, 3]
    assert attempts[1].started_at - attempts[0].started_at == timedelta(microseconds=7)
    final = store.get_delivery(delivery.id)
    assert final.status == "delivered" and final.attempts == 3 and final.success


def test_unreachable_database_is_a_one_line_store_error() -> None:
    with pytest.raises(StoreError) as err:
        Store.open("postgresql://nobody:pw@127.0.0.1:1/none")
    assert "127.0.0.1:1" in str(err.value) and "pw" not in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_schema_asks_for_migrate(pg_url: str) -> None:
    with pytest.raises(StoreError, match="asyncevents migrate"):
        Store.open(pg_url)


def test_purge_removes_old_final_deliveries_in_batches(store: Store) -> None:
    sub = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                    token="t")
    made = []
    for n, status in enumerate(["delivered", "dead", "retrying", "delivered", "dead"]):
        (d,) = store.ensure_deliveries(event_id=f"e{n}", event_name="a", published_at=utcnow(),
                                       payload={}, targets=[sub])
        store.record_attempt(d.id, NewAttempt(started_at=utcnow(), duration_ms=1, success=False,
                                              status_code=500, response="", error="x",
                                              status=status))  # type: ignore[arg-type]
        made.append(d.id)
    assert store.purge_before(utcnow() - timedelta(days=1)) == 0  # nothing that old
    later = utcnow() + timedelta(seconds=1)
    assert store.purge_before(later, dry_run=True) == 4
    assert store.purge_before(later, batch=3) == 4
    assert [d.id for d in store.recent_deliveries()] == [made[2]]  # retrying stays
    assert store.list_attempts(made[0]) == []
    assert len(store.list_attempts(made[2])) == 1


def test_delivery_and_subscription_in_one_query(store: Store) -> None:
    sub = store.create_subscription(event_name="a", sink="http", recipient="http://h",
                                    token="tok", metadata={"k": 1})
    (d,) = store.ensure_deliveries(event_id="e", event_name="a", published_at=utcnow(),
                                   payload={"p": [1, {"q": 2}]}, targets=[sub])
    delivery, found = store.delivery_and_subscription(d.id)
    assert delivery == store.get_delivery(d.id)
    assert found is not None and found.token == "tok" and found.metadata == {"k": 1}
    store.delete_subscription(sub.id)
    _, deleted = store.delivery_and_subscription(d.id)
    assert deleted is not None and deleted.active is False  # deleted ones are still found
    with pytest.raises(NotFound):
        store.delivery_and_subscription("nope")


def _at_revision(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from asyncevents.core.store import migrate

    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(migrate._SCRIPTS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def test_an_older_sqlite_schema_catches_up_on_open(tmp_path: Path) -> None:
    from asyncevents.core.store import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    _at_revision(url, "0004")
    store = Store.open(url)
    assert not migrate.is_behind(store.engine)
    assert store.claim_idempotency_key("token-id", "k", "f" * 64)  # the 0005 columns
    store.close()


def test_an_older_server_schema_asks_for_migrate(pg_url: str) -> None:
    _at_revision(pg_url, "0004")
    with pytest.raises(StoreError, match="older than this asyncevents; run 'asyncevents "
                                         "migrate'"):
        Store.open(pg_url)
    Store.open(pg_url, auto_migrate=True).close()  # what 'asyncevents migrate' does
    Store.open(pg_url).close()
