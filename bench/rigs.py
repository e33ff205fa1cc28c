"""The systems under test, each set up fresh and torn down after use.

Every rig has the same shape: a context manager that prepares its queues and
databases and starts its consumer processes (warmed up), ``publish(n, seq)``
to send ``n`` events with sequence numbers ``seq(i)``, ``pids`` (the consumer
processes, for CPU and memory), and ``alive()`` which raises if one died.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from bench import harness as h

# ASYNCEVENTS_SECRET_KEY for the rigs' stores (a Fernet key: 32 bytes, base64).
BENCH_SECRET_KEY = base64.urlsafe_b64encode(b"benchmark-rig-secret-key-32-byte").decode()

Seq = Callable[[int], int]


def _ident(i: int) -> int:
    return i


def _warm(_i: int) -> int:
    return -1  # not recorded by the receiver's per-seq clock


class Rig:
    name = "rig"
    warm_n = 50
    expect_per_event = 1

    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver
        #: called after setup, before the consumers start (to fill tables, say)
        self.before_start: Callable[[Any], None] | None = None
        self.stack = contextlib.ExitStack()
        self.logdir: Path = Path()
        self.procs: h.Procs | None = None

    @property
    def pids(self) -> list[int]:
        return self.procs.pids if self.procs else []

    def alive(self) -> None:
        if self.procs is not None:
            self.procs.check_alive()

    def publish(self, n: int, seq: Seq = _ident) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        raise NotImplementedError

    def start_consumers(self) -> None:
        raise NotImplementedError

    def warm(self) -> None:
        try:
            h.warm_up(self.receiver, lambda n: self.publish(n, _warm), self.warm_n,
                      timeout=60.0, alive=self.alive,
                      expect=self.warm_n * self.expect_per_event)
        except TimeoutError as exc:
            tail = self.procs.tail() if self.procs else ""
            raise TimeoutError(f"{self.name}: {exc}; consumer log:\n{tail}") from None

    def __enter__(self) -> Self:
        try:
            h.wait_services()
            self.logdir = self.stack.enter_context(h.temp_dir(self.name))
            self.setup()
            if self.before_start is not None:
                self.before_start(self)
            self.start_consumers()
            self.warm()
        except BaseException:
            try:
                self.stop_consumers()
            finally:
                self.stack.close()
            raise
        return self

    def stop_consumers(self) -> None:
        if self.procs is not None:
            self.procs.stop()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_consumers()
        finally:
            self.stack.close()


# -- asyncevents -----------------------------------------------------------------------


class AsyncEventsRig(Rig):
    """An asyncevents worker (``python -m asyncevents worker``) on one transport.

    ``transport``: ``amqp`` (store on PostgreSQL), ``pg`` (queue and store in
    one PostgreSQL database) or ``sqlite`` (queue and store in SQLite files).
    ``processes``: above 1, ONE ``asyncevents worker --processes N`` command
    (the supervisor and its N children, as an installation runs it); ``pids``
    is then the supervisor's, and CPU is summed over it and its descendants.
    """

    def __init__(self, receiver: Any, transport: str = "amqp", *, subscriptions: int = 1,
                 processes: int = 1, concurrency: int = h.WORKER_CONCURRENCY,
                 start: bool = True, wrap: list[str] | None = None,
                 extra_env: dict[str, str] | None = None, whatif: bool = False) -> None:
        super().__init__(receiver)
        self.whatif = whatif
        self.transport = transport
        self.name = f"asyncevents-{transport}"
        self.subscriptions = subscriptions
        self.expect_per_event = subscriptions
        self.warm_n = max(1, 50 // subscriptions)
        self.processes = processes
        self._log_checked = 0.0
        self.concurrency = concurrency
        self.autostart = start
        self.wrap = wrap
        self.extra_env = extra_env or {}
        self.prefix = f"bench.{h.uid()}"
        self.app: Any = None
        self.database_url = ""
        self.transport_url = ""

    def setup(self) -> None:
        if self.transport == "sqlite":
            self.database_url = f"sqlite:///{self.logdir / 'store.db'}"
            self.transport_url = f"sqla+sqlite:///{self.logdir / 'queue.db'}"
        else:
            self.database_url = self.stack.enter_context(h.pg_database(self.transport))
            self.transport_url = (h.AMQP_URL if self.transport == "amqp"
                                  else "sqla+" + self.database_url)
        if self.transport == "amqp":
            self.stack.callback(h.rabbit_delete, [f"{self.prefix}.trigger",
                                                  f"{self.prefix}.deliver"], [self.prefix])
        from asyncevents import App
        from asyncevents.core.store import Store

        Store.open(self.database_url, auto_migrate=True).close()
        self.app = App(**self.settings())
        self.stack.callback(self._close_app)
        for i in range(self.subscriptions):
            url = self.receiver.url if self.subscriptions == 1 else self.receiver.url_for(f"s{i}")
            self.app.subscribe(h.EVENT, url, token=h.TOKEN)
        self.app.transport.check()  # declares the queues before any worker or publish

    def _close_app(self) -> None:
        if self.app is not None:
            self.app.close()
        with contextlib.suppress(Exception):
            from asyncevents.core.transport.sql.schema import dispose_engines

            dispose_engines()
        import gc

        gc.collect()  # pooled connections dropped now, not after the database is gone

    def settings(self) -> dict[str, Any]:
        return {"secret_key": BENCH_SECRET_KEY,
                "transport_url": self.transport_url, "database_url": self.database_url,
                "queue_prefix": self.prefix, "allowed_networks": ["127.0.0.0/8"],
                "strict_events": False, "log_level": "WARNING"}

    def env(self) -> dict[str, str]:
        env = h.base_env()
        env.update({
            "ASYNCEVENTS_TRANSPORT_URL": self.transport_url,
            "ASYNCEVENTS_DATABASE_URL": self.database_url,
            "ASYNCEVENTS_QUEUE_PREFIX": self.prefix,
            "ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8",
            "ASYNCEVENTS_STRICT_EVENTS": "false",
            "ASYNCEVENTS_LOG_LEVEL": "WARNING",
            # Workers on a server database refuse to start without a key.
            "ASYNCEVENTS_SECRET_KEY": BENCH_SECRET_KEY,
        })
        env.update(self.extra_env)
        return env

    def start_consumers(self) -> None:
        self.procs = h.Procs(self.name, self.logdir)
        if self.autostart:
            self.start_worker()

    def start_worker(self) -> None:
        """Start the worker command: one process, or a supervisor and its children."""
        assert self.procs is not None
        module = "bench.whatif_worker" if self.whatif else "asyncevents"
        if self.whatif and self.processes > 1:
            raise ValueError("the what-if worker runs as one process (its children would not "
                             "be patched)")
        argv = [h.PY, "-m", module, "worker", "--concurrency", str(self.concurrency),
                "--max-idle-time", "3600"]
        if self.processes > 1:
            argv += ["--processes", str(self.processes)]
        self.procs.start(argv, self.env(), wrap=self.wrap)

    def alive(self) -> None:
        super().alive()
        now = time.monotonic()
        if self.processes > 1 and self.procs is not None and now - self._log_checked > 1.0:
            # The supervisor restarts a crashed child: a crash must not pass unseen.
            self._log_checked = now
            tail = self.procs.tail(100_000)
            if "worker process died" in tail:
                raise RuntimeError(f"{self.name}: a worker process died under the "
                                   f"supervisor:\n{tail[-2000:]}")

    def worker_pids(self) -> list[int]:
        """The processes that consume: the worker, or the supervisor's children."""
        pids = self.pids
        if self.processes > 1:
            return [p for root in pids for p in h.tree(root) if p != root]
        return pids

    def wait_consumers(self, timeout: float = 90.0) -> None:
        """Wait until every worker process consumes (RabbitMQ only: its consumer counts).

        With ``--processes N`` the children import and connect one by one; the
        warm-up alone could end before the last of them is consuming.
        """
        if self.transport != "amqp" or self.processes < 2:
            return
        deadline = time.monotonic() + timeout
        while True:
            counts = h.rabbit_consumers([f"{self.prefix}.trigger", f"{self.prefix}.deliver"])
            if counts and max(counts.values()) >= self.processes:
                return
            self.alive()
            if time.monotonic() > deadline:
                h.log(f"{self.name}: only {counts} consumers after {timeout:.0f} s "
                      f"(expected {self.processes} per queue); measuring anyway")
                return
            time.sleep(0.1)

    def warm(self) -> None:
        if self.autostart:
            self.wait_consumers()
            super().warm()

    @property
    def batch_api(self) -> bool:
        return hasattr(self.app, "publish_many")

    def publish(self, n: int, seq: Seq = _ident) -> None:
        app = self.app
        if hasattr(app, "publish_many"):
            step = 500
            for start in range(0, n, step):
                app.publish_many([(h.EVENT, h.payload(seq(i)))
                                  for i in range(start, min(n, start + step))])
            return
        for i in range(n):
            app.publish(h.EVENT, h.payload(seq(i)))


# -- Celery ----------------------------------------------------------------------------


class CeleryRig(Rig):
    """Celery over RabbitMQ: a task is one POST with a reused httpx client."""

    name = "celery"

    def __init__(self, receiver: Any, pool: str = "prefork", concurrency: int = 2) -> None:
        super().__init__(receiver)
        self.pool = pool
        self.concurrency = concurrency
        self.queue = f"bench-celery-{h.uid()}"
        self.task: Any = None

    def setup(self) -> None:
        from bench.baselines.celery_app import make_app

        app = make_app(self.queue)
        self.task = app.tasks["bench.post"]
        self.stack.callback(h.rabbit_delete, [self.queue], [self.queue])
        self.stack.callback(app.close)

    def start_consumers(self) -> None:
        env = h.base_env()
        env["BENCH_CELERY_QUEUE"] = self.queue
        env["BENCH_AMQP_URL"] = h.AMQP_URL
        self.procs = h.Procs(self.name, self.logdir)
        self.procs.start([h.PY, "-m", "celery", "-A", "bench.baselines.celery_app", "worker",
                          "-P", self.pool, "-c", str(self.concurrency), "-Q", self.queue,
                          "--without-mingle", "--without-gossip", "--without-heartbeat",
                          "-l", "WARNING"], env, cwd=h.ROOT)

    def publish(self, n: int, seq: Seq = _ident) -> None:
        url, delay = self.receiver.url, self.task.delay
        for i in range(n):
            delay(url, h.cloudevent_body(seq(i)).decode())


# -- bare kombu ------------------------------------------------------------------------


class KombuLoopRig(Rig):
    """A bare kombu consumer that POSTs each message body, then acks it.

    ``kind``: ``amqp`` (RabbitMQ, publisher confirms on), ``pg`` or ``sqlite``
    (kombu's stock ``sqla+`` transport). ``batch_confirms``: publish in
    batches with one wait for their confirms (AMQP only).
    """

    def __init__(self, receiver: Any, kind: str = "amqp", *, batch_confirms: bool = False,
                 prefetch: int = 20) -> None:
        super().__init__(receiver)
        self.kind = kind
        self.name = f"kombu-{kind}"
        self.batch_confirms = batch_confirms
        self.prefetch = prefetch
        self.queue_name = f"bench-kombu-{h.uid()}"
        self.url = ""
        self.conn: Any = None
        self.producer: Any = None
        self.queue: Any = None
        self._batcher: Any = None

    def setup(self) -> None:
        from kombu import Connection, Exchange, Producer, Queue

        if self.kind == "amqp":
            self.url = h.AMQP_URL
            self.stack.callback(h.rabbit_delete, [self.queue_name], [self.queue_name])
        elif self.kind == "pg":
            db = self.stack.enter_context(h.pg_database("kombu"))
            self.url = "sqla+" + db.replace("postgresql://", "postgresql+psycopg://")
        else:
            self.url = f"sqla+sqlite:///{self.logdir / 'kombu-queue.db'}"
        exchange = Exchange(self.queue_name, type="direct", durable=True)
        self.queue = Queue(self.queue_name, exchange=exchange, routing_key=self.queue_name,
                           durable=True)
        options = {"confirm_publish": True} if self.kind == "amqp" else {}
        self.conn = Connection(self.url, transport_options=options)
        self.stack.callback(self.conn.release)
        self.queue(self.conn.default_channel).declare()
        self.producer = Producer(self.conn, exchange=exchange, routing_key=self.queue_name,
                                 serializer="json")
        if self.batch_confirms:
            from bench.amqp_batch import BatchPublisher

            self._batcher = BatchPublisher(h.AMQP_URL)
            self.stack.callback(self._batcher.close)

    def start_consumers(self) -> None:
        self.procs = h.Procs(self.name, self.logdir)
        self.procs.start([h.PY, "-m", "bench.baselines.kombu_loop", "--url", self.url,
                          "--queue", self.queue_name, "--prefetch", str(self.prefetch)],
                         h.base_env(), cwd=h.ROOT)

    def body(self, seq: int) -> dict[str, Any]:
        return {"url": self.receiver.url, "body": h.cloudevent_body(seq).decode()}

    def publish(self, n: int, seq: Seq = _ident) -> None:
        if self._batcher is not None:
            step = 500
            for start in range(0, n, step):
                bodies = [json.dumps(self.body(seq(i))).encode()
                          for i in range(start, min(n, start + step))]
                self._batcher.publish(self.queue_name, self.queue_name, bodies)
            return
        publish = self.producer.publish
        for i in range(n):
            publish(self.body(seq(i)), delivery_mode=2)


def settle(seconds: float = 1.0) -> None:
    """Let the machine calm down between contenders."""
    time.sleep(seconds)
