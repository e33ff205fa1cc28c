"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.core.app import App
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings
from asyncevents.core.worker.worker import WorkerLimits, WorkerReport
from faults.stack import delete_amqp


@dataclass
class Hit:
    """One request a test receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Recorder:
    """Answers webhooks on a pytest-httpserver and keeps every request."""

    server: HTTPServer
    hits: list[Hit] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, path: str, statuses: list[int] | None = None,
              headers: dict[str, str] | None = None) -> str:
        """Serve ``path``: answer the ``statuses`` in turn (then 200); return its URL."""
        self.statuses[path] = list(statuses or [])

        def handler(request: Request) -> Response:
            with self.lock:
                self.hits.append(Hit(path, {k.lower(): v for k, v in request.headers.items()},
                                     request.get_data()))
                queue = self.statuses[path]
                status = queue.pop(0) if queue else 200
            return Response("ok" if status < 300 else "nope", status=status,
                            headers=headers if status >= 300 else None)

        self.server.expect_request(path, method="POST").respond_with_handler(handler)
        return self.server.url_for(path)

    def on(self, path: str) -> list[Hit]:
        """The hits on ``path``."""
        return [h for h in self.hits if h.path == path]


def drain(app: App, idle: float = 1.5, time_limit: float = 60,
          concurrency: int = 4) -> WorkerReport:
    """Run a worker in this thread until nothing is left to do."""
    return app.run_worker(WorkerLimits(concurrency=concurrency, max_idle_time=idle,
                                       time_limit=time_limit))


def delete_amqp_queues(settings: Settings) -> None:
    """Remove a test's queues and exchange from RabbitMQ."""
    delete_amqp(settings.queue_prefix, settings.transport_url)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``asyncevents ARGS`` in ``cwd``, with no ``ASYNCEVENTS_*`` variable but ``env``'s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def sqlite_rows(path: Path, table: str) -> int:
    """Rows in ``table`` of the SQLite file ``path`` (0 when the file is not there)."""
    if not path.exists():
        return 0  # the command stopped before it opened the database
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def inline_plugins() -> Plugins:
    """A plugin manager without entry points, with the shipped transports and built-in
    features registered inline."""
    from asyncevents.core.transport import amqp, kombubase, sync
    from asyncevents.core.transport.sql import transport as sql
    from asyncevents.features import operational, otel, protection

    plugins = Plugins.load(entry_points=False)
    for module in (amqp, sql, kombubase, sync, protection, operational, otel):
        plugins.register(module, name=module.__name__)
    return plugins


@pytest.fixture(autouse=True, params=["sync client", "async client"])
def both_http_clients(request: pytest.FixtureRequest,
                      monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test of a module that imports this runs against both HTTP clients:
    ``deliver``, then ``deliver_async``."""
    if request.param == "sync client":
        yield request.param
        return
    patched = AsyncClientOnly(monkeypatch)
    yield request.param
    patched.close()


class AsyncClientOnly:
    """Makes ``HttpSink.deliver`` go through ``deliver_async`` (the worker's client).

    Tests written against the synchronous ``deliver`` then check the asynchronous
    client the same way: each call runs ``deliver_async`` on one event loop kept
    in a thread for the test, as the worker's engine does.
    """

    def __init__(self, monkeypatch: Any) -> None:
        import asyncio

        from asyncevents.sinks.http import HttpSink

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sinks: list[Any] = []
        loop, sinks = self.loop, self.sinks

        def deliver(sink: Any, request: Any) -> Any:
            if sink not in sinks:
                sinks.append(sink)
            return asyncio.run_coroutine_threadsafe(sink.deliver_async(request), loop).result()

        monkeypatch.setattr(HttpSink, "deliver", deliver)

    def close(self) -> None:
        """Close the sinks' asynchronous clients and the loop."""
        import asyncio

        for sink in self.sinks:
            asyncio.run_coroutine_threadsafe(sink.aclose(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``check`` every 0.1 s until it is true; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(heading: str) -> str:
    """The first ``sh`` block under ``heading`` (the whole heading line) in README.md."""
    import re

    section = README.read_text(encoding="utf-8").split(f"\n{heading}\n", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found, f"no sh block under {heading!r}"
    return found.group(1)


def run_readme_block(heading: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run that block with bash -e, this interpreter's ``asyncevents`` first on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-e", "-c", readme_block(heading)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-dev-shm-usage"]


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium from Debian (``scripts/install-browser.sh``); a test fails without it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh (Debian packages "
                    "chromium and chromium-driver) before the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
