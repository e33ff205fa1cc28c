"""Fixtures: the real RabbitMQ on 127.0.0.1:5672, in a virtual host and with a user of this
test session (created and deleted with rabbitmqctl), an exchange and a bound queue per test.

The user's password is the contract kit's ``TEST_TOKEN``: the kit's requests log in as it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from kombu import Connection, Exchange, Queue

from asyncevents import Settings
from asyncevents.testing import TEST_TOKEN

HOST, PORT = "127.0.0.1", 5672
RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl ARGS``; fail the test with its output if it fails."""
    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    """A virtual host and a user of the same name, for this session; deleted afterwards.

    The user, whose password is ``TEST_TOKEN``, may do everything in the virtual host.
    """
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on {HOST}:{PORT} ({exc}); start it")
    name = f"asyncevents-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("add_user", name, TEST_TOKEN)
        rabbitmqctl("set_permissions", "-p", name, name, ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)
        subprocess.run([RABBITMQCTL, "delete_user", name], capture_output=True, timeout=60)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ASYNCEVENTS_") and not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory; the local broker
    (127.0.0.1) lets through the address guard."""
    return Settings(strict_events=False, polling_interval=0.05, allowed_networks=["127.0.0.0/8"])


@dataclass
class Route:
    """A topic exchange of one test and a queue bound to it for ``orders.#``.

    The virtual host's name is also its user's.
    """

    vhost: str
    exchange: str
    queue: str

    def recipient(self, routing_key: str = "orders.created", exchange: str | None = None) -> str:
        """The sink recipient publishing to this route as the session's user."""
        name = self.exchange if exchange is None else exchange
        return (f"amqp://{self.vhost}@{HOST}:{PORT}/{quote(self.vhost, safe='')}/"
                f"{name}/{routing_key}")

    def connection(self) -> Connection:
        """A kombu connection to the route's virtual host."""
        return Connection(hostname=HOST, port=PORT, userid=self.vhost, password=TEST_TOKEN,
                          virtual_host=self.vhost, transport="pyamqp")

    def drain(self) -> list[Any]:
        """Every message waiting in the queue (py-amqp messages), acked."""
        found = []
        with self.connection() as conn:
            channel = conn.default_channel
            while (message := channel.basic_get(self.queue, no_ack=True)) is not None:
                found.append(message)
        return found


def declare(vhost: str, **queue_arguments: Any) -> Route:
    """A new topic exchange and a queue bound to it for ``orders.#``."""
    hexid = uuid.uuid4().hex[:12]
    route = Route(vhost, f"ex-{hexid}", f"q-{hexid}")
    with route.connection() as conn:
        exchange = Exchange(route.exchange, "topic", durable=False, auto_delete=False)
        Queue(route.queue, exchange, "orders.#", durable=False,
              queue_arguments=queue_arguments or None)(conn.default_channel).declare()
    return route


@pytest.fixture
def route(vhost: str) -> Route:
    """An exchange and a bound queue in the session's virtual host."""
    return declare(vhost)


def body_of(message: Any) -> dict[str, Any]:
    """A delivered message's JSON body."""
    data: dict[str, Any] = json.loads(message.body)
    return data
