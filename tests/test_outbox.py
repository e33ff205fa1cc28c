"""The transactional outbox: ``publish(..., connection=conn)`` sends if and only if conn commits.

Over the real pieces: the application's database (SQLite, PostgreSQL), the
transport (RabbitMQ: the ``asyncevents_outbox`` table and its relay; a SQL
queue in the application's own database: the queue row is the outbox), a
worker, and a local HTTP receiver.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from sqlalchemy.orm import Session

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from asyncevents.core.store import (
    OutboxRow,
    Store,
    add_to_outbox,
    outbox_engine,
    take_from_outbox,
)
from asyncevents.core.worker.worker import WorkerLimits
from tests.helpers import Recorder, delete_amqp_queues, drain, run_cli

metadata = sa.MetaData()
orders = sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True))

QUEUE_TABLE = "asyncevents_queue_message"
OUTBOX_TABLE = "asyncevents_outbox"


@dataclass
class Rig:
    """An application database with an ``orders`` table, an App and a receiver."""

    kind: str
    """``amqp`` (outbox table, relayed) or ``sqla`` (the queue in the application's database)."""
    app_url: str
    engine: sa.Engine
    settings: Settings
    app: App
    recorder: Recorder

    def rows(self, table: str) -> int:
        """Rows of ``table`` in the application's database (0 when it is not there)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return 0
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def waiting(self) -> int:
        """Events written and not yet handed to a worker's queue by the relay."""
        return self.rows(QUEUE_TABLE if self.kind == "sqla" else OUTBOX_TABLE)

    def trigger_queue(self) -> int:
        """Messages waiting in the transport's trigger queue."""
        name = f"{self.settings.queue_prefix}.trigger"
        return self.app.transport.queue_sizes().get(name, 0)

    def hit_ids(self) -> list[str]:
        """The event ids the receiver got, in arrival order."""
        return [hit.json["id"] for hit in self.recorder.hits]


def _database(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("pg_url" if name == "postgresql" else "mysql_url")
    return url


@pytest.fixture(params=["sqlite-amqp", "postgresql-amqp", "mysql-amqp",
                        "sqlite-sqla", "postgresql-sqla", "mysql-sqla"])
def rig(request: pytest.FixtureRequest, make_settings: Callable[..., Settings],
        tmp_path: Path, httpserver: HTTPServer) -> Iterator[Rig]:
    """Each application database with each way of writing the event."""
    database, kind = request.param.split("-")
    app_url = _database(request, tmp_path, database)
    values: dict[str, Any] = {"outbox_sweep_seconds": 0.2}
    if kind == "amqp":
        values["transport_url"] = request.getfixturevalue("amqp_url")
    else:
        values["transport_url"] = f"sqla+{app_url}"
    if database != "sqlite":
        # The store in the application's database: the default outbox URL is right.
        values["database_url"] = app_url
        Store.open(app_url, auto_migrate=True).close()
    else:
        # A store of its own: workers are told where the outbox is.
        values["outbox_url"] = app_url
    settings = make_settings(**values)
    engine = sa.create_engine(app_url)
    metadata.create_all(engine)
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    yield Rig(kind, app_url, engine, settings, app, recorder)
    app.close()
    engine.dispose()
    if kind == "amqp":
        delete_amqp_queues(settings)


def test_a_commit_sends_the_event_once(rig: Rig) -> None:
    with rig.engine.begin() as conn:
        conn.execute(orders.insert().values(id=42))
        event_id = rig.app.publish("sales.order.created", {"id": 42}, connection=conn)
        # Written in the transaction, not sent: the worker's queue has nothing yet.
        if rig.kind == "amqp":
            assert rig.trigger_queue() == 0
    # Right after the commit: relayed (outbox empty) or visible in the queue table.
    assert rig.rows(OUTBOX_TABLE) == 0
    assert rig.trigger_queue() == 1
    report = drain(rig.app)
    assert rig.hit_ids() == [event_id]
    assert rig.recorder.hits[0].json["data"] == {"id": 42}
    assert report.failed == 0
    assert rig.waiting() == 0


def test_a_rollback_sends_and_keeps_nothing(rig: Rig) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"), rig.engine.begin() as conn:
        conn.execute(orders.insert().values(id=7))
        rig.app.publish("sales.order.created", {"id": 7}, connection=conn)
        rig.app.publish_many([("sales.order.paid", {"id": 7})], connection=conn)
        raise RuntimeError("changed my mind")
    assert rig.rows("orders") == 0
    assert rig.waiting() == 0
    assert rig.trigger_queue() == 0
    report = drain(rig.app, idle=1.0)
    assert rig.recorder.hits == []
    assert report.handled == 0


def test_a_session_commit_sends_and_its_rollback_does_not(rig: Rig) -> None:
    with Session(rig.engine) as session, session.begin():
        session.execute(orders.insert().values(id=1))
        kept = rig.app.publish("sales.order.created", {"id": 1}, connection=session)
        with session.begin_nested():  # a SAVEPOINT released is not the commit
            paid = rig.app.publish("sales.order.paid", {"id": 1}, connection=session)
        assert rig.rows(OUTBOX_TABLE) == 0  # nothing visible before the commit
    with Session(rig.engine) as session:
        session.begin()
        session.execute(orders.insert().values(id=2))
        rig.app.publish("sales.order.created", {"id": 2}, connection=session)
        session.rollback()
    assert rig.rows(OUTBOX_TABLE) == 0
    drain(rig.app, concurrency=1)
    assert rig.hit_ids() == [kept, paid]  # the rolled-back one never comes


def test_events_of_one_transaction_keep_their_order(rig: Rig) -> None:
    with rig.engine.begin() as conn:
        ids = [rig.app.publish("sales.order.created", {"n": n}, connection=conn)
               for n in range(4)]
        ids += rig.app.publish_many([("sales.order.paid", {"n": n}) for n in range(4, 8)],
                                    connection=conn)
    assert rig.rows(OUTBOX_TABLE) == 0
    drain(rig.app, concurrency=1)  # one thread: handled in the queue's order
    assert rig.hit_ids() == ids
    assert [h.json["data"]["n"] for h in rig.recorder.hits] == list(range(8))


def test_a_delayed_event_waits_for_the_commit_and_its_delay(rig: Rig) -> None:
    with rig.engine.begin() as conn:
        conn.execute(orders.insert().values(id=3))
        event_id = rig.app.publish("sales.order.created", {"id": 3}, delay=0.5,
                                   connection=conn)
    assert rig.rows(OUTBOX_TABLE) == 0  # handed to the transport's delays at the commit
    assert rig.trigger_queue() == 0  # but not ready yet
    drain(rig.app)
    assert rig.hit_ids() == [event_id]


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "mysql"])
def test_the_relay_and_a_sweep_never_send_the_same_row(database: str,
                                                        request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    engine = outbox_engine(_database(request, tmp_path, database))
    with engine.begin() as conn:
        add_to_outbox(conn, "shop", [(f"e{n}", {"n": n}, None) for n in range(3)])
    sent: list[list[str]] = []
    swept: list[int] = []
    sweeper: list[threading.Thread] = []

    def sweep() -> None:
        swept.append(take_from_outbox(engine, "shop", lambda rows: sent.append(
            [row.event_id for row in rows])))

    def relay(rows: list[OutboxRow]) -> None:
        sent.append([row.event_id for row in rows])
        # A sweep while the relay holds its rows, before it deleted them.
        sweeper.append(threading.Thread(target=sweep))
        sweeper[0].start()
        if database != "sqlite":
            sweeper[0].join()  # SKIP LOCKED: it answers at once, having taken nothing
        # SQLite: it waits for this transaction (one writer), then finds nothing.

    assert take_from_outbox(engine, "shop", relay, event_ids=["e0", "e1", "e2"]) == 3
    sweeper[0].join()
    assert swept == [0]
    assert sent == [["e0", "e1", "e2"]]
    assert take_from_outbox(engine, "shop", lambda rows: sent.append([])) == 0  # all deleted
    engine.dispose()


@pytest.mark.parametrize("options", [{}, {"isolation_level": "AUTOCOMMIT"}])
def test_rows_stay_when_the_transport_refuses_them(options: dict[str, Any],
                                                   tmp_path: Path) -> None:
    # The relay takes from the application's engine, whatever its isolation level.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}", **options)
    with engine.begin() as conn:
        add_to_outbox(conn, "shop", [("e1", {"n": 1}, None), ("e2", {"n": 2}, None)])
        add_to_outbox(conn, "other", [("o1", {"n": 3}, None)])  # another installation's

    def refuse(rows: list[OutboxRow]) -> None:
        raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        take_from_outbox(engine, "shop", refuse)
    taken: list[str] = []

    def take(rows: list[OutboxRow]) -> None:
        taken.extend(row.event_id for row in rows)

    assert take_from_outbox(engine, "shop", take) == 2
    assert taken == ["e1", "e2"]  # still there, still in order; not the other's
    assert take_from_outbox(engine, "other", take) == 1
    assert taken == ["e1", "e2", "o1"]
    engine.dispose()


def _queued(app: App) -> int:
    return sum(app.transport.queue_sizes().values())


def test_a_connection_relays_when_its_next_transaction_begins(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    app = App(make_settings(outbox_url=app_url))  # a SQL queue in another database
    engine = sa.create_engine(app_url)
    metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(orders.insert().values(id=1))
        app.publish("sales.order.created", {"id": 1}, connection=conn)
        conn.commit()
        conn.execute(sa.select(orders.c.id)).all()  # the next transaction: relayed first
        assert _queued(app) == 1
    assert _queued(app) == 1  # and not twice at its return to the pool
    app.close()
    engine.dispose()


def test_a_pool_with_no_connection_to_spare_still_relays(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    app = App(make_settings(outbox_url=app_url))
    # One connection, no overflow: the relay must wait for the application's own.
    engine = sa.create_engine(app_url, pool_size=1, max_overflow=0, pool_timeout=5)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=1))
        ids = app.publish_many([("sales.order.created", {"id": 1}),
                                ("sales.order.paid", {"id": 1})], connection=conn)
    app.outbox.close()  # waits for the relay's thread
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {OUTBOX_TABLE}")).scalar() == 0
    assert _queued(app) == len(ids)
    app.close()
    engine.dispose()


def test_a_connection_lost_mid_transaction_rolls_back_cleanly(
        make_settings: Callable[..., Settings], pg_url: str) -> None:
    app = App(make_settings(outbox_url=pg_url))
    engine = sa.create_engine(pg_url)
    metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(orders.insert().values(id=1))
        app.publish("sales.order.created", {"id": 1}, connection=conn)
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as other:  # the server drops the application's connection
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(sa.exc.OperationalError):
            conn.execute(sa.text("SELECT 1"))
        assert conn.invalidated
        conn.rollback()  # the outbox's events on this connection stay out of the way
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one() == 0
        assert conn.execute(sa.text(f"SELECT count(*) FROM {OUTBOX_TABLE}")).scalar_one() == 0
    assert _queued(app) == 0
    app.close()
    engine.dispose()


CRASH = textwrap.dedent("""
    import os, sys
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from asyncevents.core.app import App

    engine = sa.create_engine(sys.argv[1])
    orders = sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    app = App()
    if sys.argv[2] == "session":
        target = Session(engine)
        # The application's own after_commit hook, before the relay's: it dies there.
        event.listen(target, "after_commit", lambda s: (print(" ".join(ids), flush=True),
                                                        os._exit(0)))
    else:
        target = engine.connect()
    target.execute(orders.insert().values(id=5))
    ids = [app.publish("sales.order.created", {"id": 5}, connection=target)]
    ids += app.publish_many([("sales.order.paid", {"id": 5})], connection=target)
    target.commit()
    print(" ".join(ids), flush=True)
    os._exit(0)  # gone after the commit, before the relay
""")


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update(ASYNCEVENTS_TRANSPORT_URL=settings.transport_url,
               ASYNCEVENTS_DATABASE_URL=settings.database_url,
               ASYNCEVENTS_QUEUE_PREFIX=settings.queue_prefix,
               ASYNCEVENTS_STRICT_EVENTS="false")
    if settings.outbox_url is not None:
        env["ASYNCEVENTS_OUTBOX_URL"] = settings.outbox_url
    return env


def _crash(rig: Rig, tmp_path: Path, through: str = "connection") -> list[str]:
    """Run CRASH: it commits two events and dies before relaying them; their ids."""
    done = subprocess.run([sys.executable, "-c", CRASH, rig.app_url, through], cwd=tmp_path,
                          env=_environment(rig.settings), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("through", ["connection", "session"])
def test_a_crash_between_commit_and_relay_is_swept_by_the_next_worker(
        rig: Rig, tmp_path: Path, through: str) -> None:
    ids = _crash(rig, tmp_path, through)
    assert rig.rows("orders") == 1
    assert rig.waiting() == 2  # committed, never relayed
    if rig.kind == "amqp":
        assert rig.trigger_queue() == 0
    # Its periodic sweep would come too late for this idle limit: the one at start does it.
    rig.app.settings = rig.settings.model_copy(update={"outbox_sweep_seconds": 3600.0})
    report = drain(rig.app, concurrency=1)
    assert rig.hit_ids() == ids  # once each, in order
    assert rig.waiting() == 0
    assert report.failed == 0


def test_a_running_worker_sweeps_what_a_crash_left(rig: Rig, tmp_path: Path) -> None:
    worker = rig.app.worker(WorkerLimits(concurrency=1, time_limit=120))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        ids = _crash(rig, tmp_path)  # while the worker runs: its periodic sweep finds them
        deadline = time.monotonic() + 60
        while len(rig.recorder.hits) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        thread.join()
    assert rig.hit_ids() == ids
    assert rig.waiting() == 0


def test_a_broker_down_at_commit_loses_nothing(make_settings: Callable[..., Settings],
                                               amqp_url: str, tmp_path: Path,
                                               httpserver: HTTPServer) -> None:
    app_url = f"sqlite:///{tmp_path / 'app.db'}"
    settings = make_settings(transport_url=amqp_url, outbox_url=app_url,
                             outbox_sweep_seconds=0.2)
    engine = sa.create_engine(app_url)
    metadata.create_all(engine)
    # The application publishes while its broker is unreachable (nothing listens there).
    offline = App(settings.model_copy(update={"transport_url": "amqp://guest:guest@127.0.0.1:1//"}))
    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=9))
        event_id = offline.publish("sales.order.created", {"id": 9}, connection=conn)
    offline.close()
    with engine.connect() as conn:  # the commit stands, the event waits in the outbox
        assert conn.execute(sa.text(f"SELECT event_id FROM {OUTBOX_TABLE}")).scalars().all() == [
            event_id]
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/hook"), token="t")
    try:
        drain(app)
        assert [hit.json["id"] for hit in recorder.hits] == [event_id]
    finally:
        app.close()
        engine.dispose()
        delete_amqp_queues(settings)


@pytest.mark.parametrize("url", ["nonsense", "postgresql+nodriver://u@127.0.0.1/db"])
def test_a_bad_outbox_url_stops_the_worker_with_one_line(url: str, tmp_path: Path) -> None:
    done = run_cli("worker", "--max-idle-time", "1", cwd=tmp_path,
                   env={"ASYNCEVENTS_OUTBOX_URL": url})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error:") and "ASYNCEVENTS_OUTBOX_URL" in line, line


def test_connection_must_be_a_connection_or_a_session(make_settings: Callable[..., Settings]
                                                      ) -> None:
    app = App(make_settings())
    with pytest.raises(TypeError, match="Connection or Session"):
        app.publish("sales.order.created", {"id": 1}, connection="sqlite:///x.db")  # type: ignore[arg-type]
    app.close()


README = Path(__file__).resolve().parent.parent / "README.md"
README_PORT = 8766  # the receiver's port in that section


def readme_block() -> str:
    """The first ``sh`` block of the README's "Transactional outbox" section."""
    section = README.read_text(encoding="utf-8").split("\n## Transactional outbox\n", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, "no sh block under '## Transactional outbox'"
    return found.group(1)


@pytest.mark.slow
@pytest.mark.xdist_group("fixed-ports")  # its receiver listens on 8766
@pytest.mark.timeout(300)
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "outbox.sh"
    script.write_text(readme_block(), encoding="utf-8")
    work = tmp_path / "fresh"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    deadline = time.monotonic() + 60
    while True:  # another test's receiver may still hold the port
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", README_PORT)) != 0:
                break
        assert time.monotonic() < deadline, f"port {README_PORT} stays taken"
        time.sleep(0.5)
    # Its own session, so the receiver it starts in the background goes whatever happens.
    shell = subprocess.Popen(["bash", "-e", "-o", "pipefail", str(script)], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err and "do not sweep" not in out + err, err
    assert "rolled back" in out
    received = [line for line in out.splitlines() if line.startswith("receiver: sales.")]
    assert len(received) == 1, out  # order 42 only, once
    assert received[0].endswith("signature valid, answered 200"), out
    engine = sa.create_engine(f"sqlite:///{work / 'shop.db'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM orders")).scalars().all() == [42]
            assert conn.execute(sa.text(f"SELECT count(*) FROM {OUTBOX_TABLE}")).scalar() == 0
    finally:
        engine.dispose()
