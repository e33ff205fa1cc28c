"""``asyncevents serve``: the REST API and the web console, optionally with a worker."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from asyncevents.cli.context import get_app
from asyncevents.cli.output import console
from asyncevents.core.worker.worker import Worker, WorkerLimits

if TYPE_CHECKING:
    import uvicorn

__all__ = ["serve"]


def _server(config: uvicorn.Config) -> uvicorn.Server:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGTERM/SIGINT once it has stopped.

        uvicorn kills its own process with the signal after a graceful stop;
        ``serve`` stops its worker first and then exits 0, as ``worker`` does.
        """

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (0.0.0.0 for every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--worker", "with_worker", is_flag=True,
              help="Also run a worker in this process (handy for small installations).")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Deliveries in flight at once in the --worker.")
@click.option("--no-console", is_flag=True, help="Serve the REST API only.")
@click.option("--root-path", default="", help="The path prefix a reverse proxy serves us under.")
def serve(host: str, port: int, with_worker: bool, concurrency: int, no_console: bool,
          root_path: str) -> None:
    """Serve the REST API (OpenAPI at /docs) and the web console (/console)."""
    import uvicorn

    from asyncevents.api.app import create_app

    app = get_app()
    app.require_secret_key()
    app.catalog.check_resolvers()
    api = create_app(app, console=not no_console)
    app.store  # noqa: B018 - open (and on SQLite create) the store before the first request
    worker: Worker | None = None
    thread: threading.Thread | None = None
    if with_worker:
        app.transport.check()
        # The worker runs in a thread: it installs no signal handlers there, and
        # uvicorn's own (in the main thread) end the server, then we stop it.
        worker = app.worker(WorkerLimits(concurrency=concurrency))
        thread = threading.Thread(target=worker.run, name="asyncevents-worker", daemon=True)
        thread.start()
    console.print(f"asyncevents API on http://{host}:{port}/docs, console on "
                  f"http://{host}:{port}/console" + (" (with a worker)" if with_worker else ""))
    try:
        _server(uvicorn.Config(api, host=host, port=port, root_path=root_path,
                               log_level="info", server_header=False)).run()
    finally:
        if worker is not None and thread is not None:
            worker.stop("server stopped")
            thread.join(timeout=60)
