"""One asyncevents installation per fault run, on a real transport, and its worker processes.

A :class:`Stack` owns a temporary directory, a fresh queue prefix (RabbitMQ),
a fresh PostgreSQL database (``sqla+postgresql``) or SQLite files
(``sqla+sqlite``), and removes what it created when it closes. Workers are
real ``asyncevents worker`` processes whose logs go to files in that
directory, so a run can read them afterwards.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from asyncevents.core.app import App
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings

__all__ = ["AMQP_URL", "PG_ADMIN", "TRANSPORTS", "ServiceDown", "Stack", "WorkerProcess",
           "require_service"]

PG_ADMIN = os.environ.get("ASYNCEVENTS_TEST_PG",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("ASYNCEVENTS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
TRANSPORTS = ("amqp", "sqla+postgresql", "sqla+sqlite")
TOKEN = "whsec_ZmF1bHQtc3VpdGUtc2lnbmluZy1rZXk="  # base64 of "fault-suite-signing-key"
# ASYNCEVENTS_SECRET_KEY for a store on a server database (a Fernet key: 32 bytes, base64).
SECRET_KEY = base64.urlsafe_b64encode(b"fault-suite-secret-key-32-bytes!").decode()

# Settings a worker process gets through its environment.
_ENV_FIELDS = ("transport_url", "database_url", "queue_prefix", "lease_seconds",
               "polling_interval", "max_deaths", "backoff", "backoff_base", "max_backoff",
               "http_timeout", "http_connect_timeout", "max_payload_bytes", "log_level",
               "amqp_queue_type", "amqp_delivery_limit")


class ServiceDown(RuntimeError):
    """A service the fault run needs does not answer (a failure, never a skip)."""


def require_service(port: int, what: str, timeout: float = 2.0) -> None:
    """Raise ``ServiceDown`` unless something listens on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except OSError as exc:
        raise ServiceDown(f"{what} is not reachable on 127.0.0.1:{port} ({exc})") from None


@dataclass
class WorkerProcess:
    """An ``asyncevents worker`` process and its log file."""

    process: subprocess.Popen[bytes]
    log: Path
    err: Path | None = None
    """Where its stderr went, when kept apart from the log (``Stack.worker(stderr=True)``)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` (if it still runs)."""
        if self.alive():
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        """Wait for it to exit; its exit code, or None if it still runs."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def text(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stderr(self) -> str:
        """What it wrote to stderr, when that was kept apart (else "")."""
        return self.err.read_text(errors="replace") if self.err and self.err.exists() else ""


@dataclass
class Stack:
    """Settings, an App and worker processes over one transport."""

    transport: str
    settings: Settings
    directory: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    plugins: Plugins | None = None
    """The plugins of :attr:`app` (default: the installed entry points), set before first use."""
    _app: App | None = None

    @classmethod
    @contextmanager
    def open(cls, transport: str, directory: Path, *, data: Path | None = None,
             pg_store: bool = False, **overrides: Any) -> Iterator[Stack]:
        """A fresh installation on ``transport``; everything it made is removed on exit.

        Logs go to ``directory``, SQLite files to ``data`` (default: the same).
        ``pg_store`` puts the store in a fresh PostgreSQL database whatever the
        transport. ``overrides`` are settings (``max_deaths=1``...); on
        ``amqp`` a ``transport_url`` override (a cluster) replaces the local
        RabbitMQ, and the stack's queues are deleted there.

        Everything else is at its default (lease, polling interval, retry
        policy): the faults run what users run, unless a scenario says why not.
        """
        directory.mkdir(parents=True, exist_ok=True)
        data = data or directory
        cleanups: list[Callable[[], None]] = []
        values: dict[str, Any] = {
            "queue_prefix": f"fault{uuid.uuid4().hex[:10]}",
            "allowed_networks": ["127.0.0.0/8"],
            "strict_events": False,
            "log_level": "INFO",
            "database_url": f"sqlite:///{data / 'store.db'}",
        }
        if transport == "amqp":
            if "transport_url" not in overrides:
                require_service(5672, "RabbitMQ")
            values["transport_url"] = AMQP_URL
            cleanups.append(lambda: delete_amqp(values["queue_prefix"], values["transport_url"]))
        elif transport == "sqla+postgresql":
            require_service(5432, "PostgreSQL")
            url, drop = _fresh_pg_database()
            cleanups.append(drop)
            values.update(transport_url=f"sqla+{url}", database_url=url)
        elif transport == "sqla+sqlite":
            values["transport_url"] = f"sqla+sqlite:///{data / 'queue.db'}"
        else:
            raise ValueError(f"unknown transport {transport!r}; one of {TRANSPORTS}")
        if pg_store and transport != "sqla+postgresql":
            require_service(5432, "PostgreSQL")
            url, drop = _fresh_pg_database()
            cleanups.append(drop)
            values["database_url"] = url
        if not values["database_url"].startswith("sqlite"):
            # Required there (tokens are encrypted with it); SQLite keeps its own key file.
            values["secret_key"] = SECRET_KEY
        values.update(overrides)
        stack: Stack | None = None
        try:
            settings = Settings(**values)
            if not settings.database_url.startswith("sqlite"):
                from asyncevents.core.store import Store

                Store.open(settings.database_url, auto_migrate=True).close()
            stack = cls(transport, settings, directory)
            yield stack
        finally:
            if stack is not None:
                stack.close()
            for cleanup in reversed(cleanups):
                with suppress(Exception):
                    cleanup()

    @property
    def app(self) -> App:
        """An App in this process (publishing, subscribing, reading the store)."""
        if self._app is None:
            self._app = App(self.settings, plugins=self.plugins)
        return self._app

    def env(self) -> dict[str, str]:
        """The environment of a worker process: only this stack's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
        data = self.settings.model_dump()
        for name in _ENV_FIELDS:
            env[f"ASYNCEVENTS_{name.upper()}"] = str(data[name])
        env["ASYNCEVENTS_ALLOWED_NETWORKS"] = ",".join(self.settings.allowed_networks)
        if self.settings.secret_key is not None:
            env["ASYNCEVENTS_SECRET_KEY"] = self.settings.secret_key.get_secret_value()
        if self.settings.disable_plugins:
            env["ASYNCEVENTS_DISABLE_PLUGINS"] = ",".join(self.settings.disable_plugins)
        env["ASYNCEVENTS_STRICT_EVENTS"] = "false"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def worker(self, *args: str, concurrency: int = 4, name: str = "worker",
               env: dict[str, str] | None = None, stderr: bool = False) -> WorkerProcess:
        """Start ``asyncevents worker --concurrency N ARGS...`` with its log in a file.

        ``env`` adds or replaces environment variables (``ASYNCEVENTS_*``
        included) for this process only; with ``stderr`` its stderr goes to a
        file of its own (:meth:`WorkerProcess.stderr`) instead of the log.
        """
        log = self.directory / f"{name}-{len(self.workers)}.log"
        err = self.directory / f"{name}-{len(self.workers)}.stderr" if stderr else None
        environment = {**self.env(), **(env or {})}
        with open(log, "wb") as out, open(err or os.devnull, "wb") as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "asyncevents", "worker", "--concurrency",
                 str(concurrency), *args],
                env=environment, cwd=self.directory, stdout=out,
                stderr=errors if err else subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log, err)
        self.workers.append(worker)
        return worker

    def drain(self, idle: float = 3.0, time_limit: float = 120.0,
              concurrency: int = 4) -> WorkerProcess:
        """Run a worker until nothing is left to do (or ``time_limit``)."""
        worker = self.worker("--max-idle-time", str(idle), "--time-limit", str(time_limit),
                             concurrency=concurrency, name="drain")
        if worker.wait(timeout=time_limit + 30) is None:
            worker.kill()
        return worker

    def logs(self) -> str:
        """Every worker's log, in start order."""
        return "\n".join(w.text() for w in self.workers)

    def emergency_dumps(self) -> list[Path]:
        """Files kombu wrote when it could not give unacked messages back (see the logs)."""
        return [Path(p) for p in re.findall(r"EMERGENCY DUMP STATE TO FILE -> (\S+) <-",
                                            self.logs())]

    def subscribe(self, url: str, event: str = "*", token: str = TOKEN) -> str:
        """Subscribe ``url`` to ``event``; return the subscription id."""
        return self.app.subscribe(event, url, token=token).id

    def close(self) -> None:
        """Kill workers still running, release connections, remove kombu's dump files."""
        for worker in self.workers:
            worker.kill()
        for dump in self.emergency_dumps():
            dump.unlink(missing_ok=True)  # message bodies, pickled, in /tmp
        if self._app is not None:
            self._app.close()
            self._app = None
        from asyncevents.core.transport.sql.schema import dispose_engines

        dispose_engines()


def _fresh_pg_database() -> tuple[str, Callable[[], None]]:
    name = f"ae_fault_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        finally:
            engine.dispose()

    return url, drop


def delete_amqp(prefix: str, url: str = AMQP_URL) -> None:
    """Remove the queues and the exchange of ``prefix`` from RabbitMQ at ``url``."""
    from kombu import Connection

    from asyncevents.core.transport.topology import Topology

    # quorum=True names the dead-letter queues too (deleting by name works for both types).
    topology = Topology(prefix, quorum=True)
    with Connection(url, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in topology.queues:
            try:
                queue(channel).delete()
            except Exception:
                channel = conn.channel()
        with suppress(Exception):
            topology.exchange(channel).delete()
