"""The leased SQL transport against real SQLite, PostgreSQL and MariaDB.

``database_url`` (tests/conftest.py) gives each backend in turn, PostgreSQL and
MariaDB as a fresh database per test.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from queue import Empty
from typing import Any

import kombu
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from asyncevents.core.transport.sql.channel import (
    LeasedSqlTransport,
    SqlConnection,
    connection,
    dispose_engines,
    engine_url,
    get_engines,
    messages,
)
from asyncevents.core.transport.sql.schema import run


@pytest.fixture
def url(database_url: str) -> Iterator[str]:
    yield f"sqla+{database_url}"
    dispose_engines()  # before conftest drops the database


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backends with a server, each in turn."""
    yield "sqla+" + request.getfixturevalue("pg_url" if request.param == "postgresql"
                                            else "mysql_url")
    dispose_engines()


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex}"


def rows(url: str, queue: str) -> list[Any]:
    """(id, deliveries, visible_at) of every row of ``queue``, leased or not."""
    c = messages.c
    query = select(c.id, c.deliveries, c.visible_at).where(c.queue == queue).order_by(c.id)
    return run(get_engines(url.removeprefix("sqla+")).put, lambda conn: list(conn.execute(query)))


def publish(url: str, queue: str, bodies: list[Any]) -> None:
    with connection(url) as conn, conn.SimpleQueue(queue) as q:
        for body in bodies:
            q.put(body)


def test_connection_uses_the_leased_transport(url: str) -> None:
    conn = connection(url, polling_interval=0.05)
    assert isinstance(conn.transport, LeasedSqlTransport)
    assert isinstance(conn.clone().transport, LeasedSqlTransport)  # clone re-parses the URL
    bare = connection(url.removeprefix("sqla+"))  # the prefix is optional
    assert isinstance(bare.transport, LeasedSqlTransport)
    assert isinstance(SqlConnection(url).transport, LeasedSqlTransport)


def test_kombu_drops_the_transport_argument_for_prefixed_urls() -> None:
    # Why SqlConnection exists: kombu takes ``sqla`` from the URL instead.
    conn = kombu.Connection("sqla+sqlite:///x.db", transport=LeasedSqlTransport)
    assert not isinstance(conn.transport, LeasedSqlTransport)


def test_in_memory_sqlite_is_refused() -> None:
    # Each engine (and each pooled connection) would see its own empty database.
    with pytest.raises(ValueError, match="in-memory"):
        get_engines("sqlite://")


def test_engine_url_picks_our_drivers() -> None:
    assert engine_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert engine_url("mysql://u@h/db").drivername == "mysql+pymysql"
    assert engine_url("postgresql+pg8000://u@h/db").drivername == "postgresql+pg8000"
    assert engine_url("sqlite:///x.db").drivername == "sqlite"


def test_polling_interval_and_engine_options_are_not_given_to_create_engine(
        url: str, queue: str) -> None:
    # Stock kombu passes polling_interval to create_engine: TypeError.
    options = {"polling_interval": 0.05, "lease_seconds": 7,
               "engine_options": {"pool_size": 3}}
    with SqlConnection(url, transport_options=options) as conn, conn.SimpleQueue(queue) as q:
        q.put({"n": 1})
        message = q.get(timeout=2)
        message.ack()
        assert conn.transport.polling_interval == 0.05
        assert conn.transport.lease_seconds == 7
        assert conn.transport.engines.put.pool.size() == 3
    assert connection(url, polling_interval=0.02).transport.polling_interval == 0.02


def test_consumed_and_acked_messages_leave_no_rows(url: str, queue: str) -> None:
    bodies = [{"n": i} for i in range(25)]
    publish(url, queue, bodies)
    assert len(rows(url, queue)) == 25
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with (connection(url, polling_interval=0.01) as conn,
          conn.Consumer(kombu.Queue(queue), callbacks=[on_message])):
        deadline = time.monotonic() + 20
        while len(received) < 25 and time.monotonic() < deadline:
            conn.drain_events(timeout=1)
    assert received == bodies  # FIFO
    assert rows(url, queue) == []


def _fetch_and_die(url: str, queue: str, lease_seconds: float) -> subprocess.CompletedProcess[str]:
    code = (
        "import os, signal, sys\n"
        "from asyncevents.core.transport.sql.channel import connection\n"
        f"conn = connection({url!r}, lease_seconds={lease_seconds})\n"
        f"m = conn.SimpleQueue({queue!r}).get(timeout=10)\n"
        "print(m.payload['n'], flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


def test_messages_of_a_killed_consumer_come_back_after_their_lease(url: str, queue: str) -> None:
    publish(url, queue, [{"n": i} for i in range(3)])
    died = _fetch_and_die(url, queue, lease_seconds=3)  # claims all three, gets one
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert died.stdout.strip() == "0"
    assert [r.deliveries for r in rows(url, queue)] == [1, 1, 1]
    with connection(url, lease_seconds=30) as conn, conn.SimpleQueue(queue) as q:
        assert q.qsize() == 0  # still leased by the dead consumer
        message = q.get(timeout=15)  # returns once the 3 s lease has run out
        assert message.payload == {"n": 0}
        assert message.delivery_info["redelivered"] is True
        message.ack()
        for n in (1, 2):
            message = q.get(timeout=2)
            assert message.payload == {"n": n}
            message.ack()
    assert rows(url, queue) == []


def test_graceful_close_returns_unacked_messages_at_once_without_copies(
        url: str, queue: str) -> None:
    publish(url, queue, [{"n": i} for i in range(3)])
    conn = connection(url, lease_seconds=300)
    q = conn.SimpleQueue(queue)
    held = [q.get(timeout=2) for _ in range(2)]
    assert [m.payload["n"] for m in held] == [0, 1]
    conn.release()  # closes the channel: kombu restores what was not acked
    assert [r.deliveries for r in rows(url, queue)] == [1, 1, 0]  # three rows, not five
    with connection(url, lease_seconds=300) as again, again.SimpleQueue(queue) as q2:
        assert q2.qsize() == 3
        got = []
        for _ in range(3):
            message = q2.get(timeout=2)
            got.append(message.payload["n"])
            message.ack()
    assert got == [0, 1, 2]  # back in their original places
    assert rows(url, queue) == []


def test_rows_claimed_ahead_go_back_untouched_when_the_consumer_stops(
        url: str, queue: str) -> None:
    publish(url, queue, [{"n": i} for i in range(8)])
    with connection(url, transport_options={"claim_batch": 5}) as conn:
        with conn.SimpleQueue(queue) as q:
            first = q.get(timeout=2)
            assert q.qsize() == 3  # one delivered, four claimed ahead, three ready
            first.ack()
        # closing the consumer returns the four as if never fetched
        assert [r.deliveries for r in rows(url, queue)] == [0] * 7
        with conn.SimpleQueue(queue) as q:
            message = q.get(timeout=2)
            assert message.payload == {"n": 1}
            assert "redelivered" not in message.delivery_info
            message.ack()
    assert len(rows(url, queue)) == 6


def test_reject_with_requeue_makes_the_same_row_visible(url: str, queue: str) -> None:
    publish(url, queue, [{"n": 1}])
    [(row_id, _, _)] = rows(url, queue)
    with connection(url, lease_seconds=300) as conn, conn.SimpleQueue(queue) as q:
        q.get(timeout=2).reject(requeue=True)
        assert [r.id for r in rows(url, queue)] == [row_id]
        message = q.get(timeout=2)
        assert message.payload == {"n": 1}
        assert message.delivery_info["redelivered"] is True
        message.reject(requeue=False)
    assert rows(url, queue) == []


def test_a_stale_lease_cannot_settle_the_new_holders_lease(url: str, queue: str) -> None:
    publish(url, queue, [{"n": 1}])
    with connection(url, lease_seconds=1) as slow, connection(url, lease_seconds=300) as fast:
        late = slow.SimpleQueue(queue).get(timeout=2)
        time.sleep(1.2)
        current = fast.SimpleQueue(queue).get(timeout=5)
        late.ack()  # too late: the row now belongs to ``current``
        assert len(rows(url, queue)) == 1
        current.ack()
    assert rows(url, queue) == []


def test_no_ack_consumers_delete_on_delivery(url: str, queue: str) -> None:
    publish(url, queue, [{"n": 1}, {"n": 2}])
    with connection(url) as conn, conn.SimpleQueue(queue, no_ack=True) as q:
        assert q.get(timeout=2).payload == {"n": 1}
        assert len(rows(url, queue)) == 1
        assert q.get(timeout=2).payload == {"n": 2}
    assert rows(url, queue) == []


def test_size_purge_and_delete(url: str, queue: str) -> None:
    publish(url, queue, [{"n": i} for i in range(4)])
    with connection(url) as conn, conn.SimpleQueue(queue) as q:
        q.consumer.qos(prefetch_count=1)  # claim one row, not a batch
        q.get(timeout=2)  # leased, so neither counted nor purged
        assert q.qsize() == 3
        assert q.clear() == 3
        assert len(rows(url, queue)) == 1
        q.queue.delete()
        assert rows(url, queue) == []


def test_competing_consumers_get_every_message_exactly_once(url: str, queue: str) -> None:
    total = 300
    publish(url, queue, [{"n": i} for i in range(total)])
    seen: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            with connection(url, polling_interval=0.01) as conn, conn.SimpleQueue(queue) as q:
                while True:
                    try:
                        message = q.get(timeout=1)
                    except Empty:
                        return
                    with lock:
                        seen.append(message.payload["n"])
                    message.ack()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=consume) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=90)
    assert errors == []
    assert sorted(seen) == list(range(total))
    assert max(Counter(seen).values()) == 1
    assert rows(url, queue) == []


def _kill_server_sessions(url: str) -> None:
    """Make the database drop every connection the transport has pooled."""
    engine = create_engine(engine_url(url.removeprefix("sqla+")), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        else:
            for (pid,) in conn.execute(text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = database() AND id <> connection_id()")):
                conn.execute(text(f"KILL {int(pid)}"))
    engine.dispose()


def test_dead_pooled_connections_are_replaced(server_url: str, queue: str) -> None:
    url = server_url
    with connection(url) as conn, conn.SimpleQueue(queue) as q:
        q.put({"n": 1})
        message = q.get(timeout=2)
        _kill_server_sessions(url)
        message.ack()  # on a dead pooled connection: retried on a fresh one
        q.put({"n": 2})
        _kill_server_sessions(url)
        assert q.get(timeout=2).payload == {"n": 2}
    assert [r.deliveries for r in rows(url, queue)] == [1]  # {"n": 1} is gone


def test_postgres_claims_skip_the_wal_flush_but_publishes_do_not(pg_url: str) -> None:
    engines = get_engines(pg_url)
    with engines.put.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    with engines.claim.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    dispose_engines()


def test_an_unreachable_database_is_a_connection_error() -> None:
    conn = connection("sqla+postgresql://postgres@127.0.0.1:9/test")
    with pytest.raises(conn.connection_errors) as info:
        conn.transport.establish_connection()
    assert isinstance(info.value, OperationalError)



def _consume_one_after_publish(url: str, queue: str, polling_interval: float,
                               before: Any = None) -> float:
    """Seconds from a publish to its delivery to a consumer idle since before it."""
    received: list[float] = []

    def on_message(_body: Any, message: Any) -> None:
        received.append(time.monotonic())
        message.ack()

    sent: list[float] = []

    def publish_later() -> None:
        time.sleep(1.0)  # the consumer has polled the empty queue by now
        sent.append(time.monotonic())
        publish(url, queue, [{"n": 1}])

    with (connection(url, polling_interval=polling_interval) as conn,
          conn.Consumer(kombu.Queue(queue), callbacks=[on_message])):
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.2)  # the queue exists, empty, and was polled
        if before is not None:
            before()
        thread = threading.Thread(target=publish_later)
        thread.start()
        # One long drain: kombu would otherwise poll at each call's timeout.
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=polling_interval + 5)
        thread.join()
    assert received, "the message never arrived"
    return received[0] - sent[0]


def test_postgres_wakes_an_idle_consumer_on_publish(pg_url: str, queue: str) -> None:
    # Polling every 10 s, the message would wait up to 10 s; NOTIFY wakes the consumer.
    assert _consume_one_after_publish(f"sqla+{pg_url}", queue, polling_interval=10.0) < 3.0
    dispose_engines()


def test_a_lost_listening_connection_leaves_polling(pg_url: str, queue: str) -> None:
    url = f"sqla+{pg_url}"
    # Every session of the test database goes, the listening one included:
    # the message still comes, by polling.
    took = _consume_one_after_publish(url, queue, polling_interval=0.2,
                                      before=lambda: _kill_server_sessions(url))
    assert took < 10
    dispose_engines()


def test_enqueue_many_inserts_every_row_in_one_transaction(make_settings: Any,
                                                           url: str) -> None:
    from sqlalchemy import event

    from asyncevents.core.clock import utcnow
    from asyncevents.core.messages import TriggerMessage
    from asyncevents.core.transport.sql.transport import SqlTransport

    transport = SqlTransport(make_settings(transport_url=url))
    transport.enqueue(TriggerMessage("warm", "e", {}, utcnow()))  # connect, declare
    engine = get_engines(url.partition("+")[2]).put
    commits: list[object] = []

    def on_commit(conn: object) -> None:
        commits.append(conn)

    event.listen(engine, "commit", on_commit)
    try:
        transport.enqueue_many([TriggerMessage(f"id-{n}", "e", {"n": n}, utcnow())
                                for n in range(20)])
    finally:
        event.remove(engine, "commit", on_commit)
        transport.close()
    assert len(commits) == 1
    assert len(rows(url, f"{transport.settings.queue_prefix}.trigger")) == 21


def test_a_delay_is_a_row_visible_later(make_settings: Any, url: str) -> None:
    from asyncevents.core.clock import utcnow
    from asyncevents.core.messages import TriggerMessage
    from asyncevents.core.transport.sql.transport import SqlTransport

    transport = SqlTransport(make_settings(transport_url=url))
    queue = f"{transport.settings.queue_prefix}.trigger"
    try:
        assert transport.seconds_until_due() is None
        transport.enqueue(TriggerMessage("later", "e", {}, utcnow()), delay=1.5)
        due = transport.seconds_until_due()
        assert due is not None and 0.5 < due <= 1.5
        with connection(url) as conn, conn.SimpleQueue(queue) as q:
            with pytest.raises(Empty):
                q.get(timeout=0.3)  # not visible yet: no schedule table, no pump
            message = q.get(timeout=5)
            assert message.payload["event_id"] == "later"
            message.ack()
        assert rows(url, queue) == []
    finally:
        transport.close()


def _consumer(make_settings: Any, url: str, prefix: str, lease: float) -> Any:
    from asyncevents.core.transport.sql.transport import SqlTransport

    return SqlTransport(make_settings(transport_url=url, queue_prefix=prefix,
                                      lease_seconds=lease))


@pytest.mark.parametrize("renewing", [True, False], ids=["renewing", "crashed"])
def test_a_holder_that_renews_keeps_its_message_past_the_lease(
        make_settings: Any, url: str, renewing: bool) -> None:
    from asyncevents.core.clock import utcnow
    from asyncevents.core.messages import TriggerMessage

    prefix = f"t{uuid.uuid4().hex[:12]}"
    holder_transport = _consumer(make_settings, url, prefix, 1.5)
    other_transport = _consumer(make_settings, url, prefix, 1.5)
    held: list[Any] = []
    stolen: list[Any] = []
    holder_transport.enqueue(TriggerMessage("slow", "e", {}, utcnow()))
    holder = holder_transport.consume(["trigger"], held.append, lambda _: None, prefetch=1)
    other = other_transport.consume(["trigger"], stolen.append, lambda _: None, prefetch=1)
    try:
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:
            holder.drain(0.1)
        assert len(held) == 1
        # Three leases long: a renewing holder keeps it, a silent one loses it.
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline and not stolen:
            if renewing:
                holder.heartbeat()
            other.drain(0.1)
        if renewing:
            assert stolen == []
            held[0].ack()
        else:
            assert [r.message.event_id for r in stolen] == ["slow"]
            stolen[0].ack()
    finally:
        holder.close()
        other.close()
        holder_transport.close()
        other_transport.close()
    assert rows(url, f"{prefix}.trigger") == []
