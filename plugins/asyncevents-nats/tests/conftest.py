"""Fixtures: the real NATS server on 127.0.0.1:4222 (started if it is down), a stream per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from asyncevents import Settings

HOST, PORT = "127.0.0.1", 4222
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_listening(port: int, seconds: float = 10.0) -> None:
    """Wait until 127.0.0.1:``port`` listens; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not listening(port):
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens on {HOST}:{port} after {seconds:g}s")
        time.sleep(0.05)


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="session", autouse=True)
def nats_server() -> None:
    """The machine's NATS with JetStream on 127.0.0.1:4222, started the packaged way if down."""
    if not listening(PORT):
        subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", NATS_SERVER,
             "--", "-a", HOST, "-p", str(PORT), "-js", "-sd", "/var/lib/nats-server",
             "-l", "/var/log/nats-server.log"], check=False, timeout=30)
        wait_listening(PORT)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ASYNCEVENTS_") and not key.startswith("ASYNCEVENTS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    """Core settings: SQLite queue and store in the test's directory; the local NATS
    servers (127.0.0.1) let through the address guard."""
    return Settings(strict_events=False, polling_interval=0.05, allowed_networks=["127.0.0.0/8"])


@dataclass
class Stream:
    """A JetStream stream of one test, on subjects ``<prefix>.>``."""

    server: str
    name: str
    prefix: str
    auth: dict[str, str]

    def recipient(self, leaf: str = "orders") -> str:
        """The sink recipient for subject ``<prefix>.<leaf>``."""
        return f"{self.server}/{self.prefix}.{leaf}"

    def messages(self) -> list[Any]:
        """Every message in the stream, oldest first (``RawStreamMsg``: data, headers, subject)."""
        async def read() -> list[Any]:
            client = await nats.connect(self.server, **self.auth)
            try:
                manager = client.jetstream()
                info = await manager.stream_info(self.name)
                return [await manager.get_msg(self.name, seq)
                        for seq in range(info.state.first_seq, info.state.last_seq + 1)
                        if info.state.messages]
            finally:
                await client.close()
        return asyncio.run(read())


def create_stream(server: str, auth: dict[str, str] | None = None, **config: Any) -> Stream:
    """A new stream on ``server`` (extra ``StreamConfig`` fields in ``config``)."""
    hexid = uuid.uuid4().hex[:12]
    stream = Stream(server, f"asyncevents-test-{hexid}", f"asyncevents-test.{hexid}", auth or {})

    async def create() -> None:
        client = await nats.connect(server, **stream.auth)
        try:
            await client.jetstream().add_stream(StreamConfig(
                name=stream.name, subjects=[f"{stream.prefix}.>"], **config))
        finally:
            await client.close()
    asyncio.run(create())
    return stream


def delete_stream(stream: Stream) -> None:
    """Delete ``stream`` (its server may already be gone)."""
    async def delete() -> None:
        client = await nats.connect(stream.server, **stream.auth)
        try:
            await client.jetstream().delete_stream(stream.name)
        finally:
            await client.close()
    with contextlib.suppress(Exception):
        asyncio.run(delete())


@pytest.fixture
def stream() -> Iterator[Stream]:
    """A stream on the machine's NATS, deleted afterwards."""
    created = create_stream(f"nats://{HOST}:{PORT}")
    yield created
    delete_stream(created)


@pytest.fixture
def full_stream() -> Iterator[Stream]:
    """A stream that holds one message and refuses more (discard new)."""
    created = create_stream(f"nats://{HOST}:{PORT}", max_msgs=1, discard=DiscardPolicy.NEW)
    yield created
    delete_stream(created)


@dataclass
class AuthServer:
    """A private nats-server that wants a token, on an ephemeral port."""

    port: int
    token: str

    @property
    def url(self) -> str:
        """Its URL, without credentials."""
        return f"nats://{HOST}:{self.port}"


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[AuthServer]:
    """A nats-server with JetStream and token authentication, stopped afterwards."""
    server = AuthServer(free_port(), "server-token-" + uuid.uuid4().hex)
    process = subprocess.Popen(
        [NATS_SERVER, "-a", HOST, "-p", str(server.port), "--auth", server.token, "-js",
         "-sd", str(tmp_path / "jetstream")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(server.port)
        yield server
    finally:
        process.terminate()
        process.wait(10)
