"""``asyncevents serve``: the REST API and the web console, optionally with a worker.

SIGHUP reloads the event catalog (``[events]`` and ``strict_events`` of
``asyncevents.toml``, and the ``register_events`` hooks) without a restart:
:meth:`App.reload_catalog <asyncevents.core.app.App.reload_catalog>`, on a
thread of its own. A catalog that does not load is logged and the one in use
stays.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from asyncevents.cli.context import get_app
from asyncevents.cli.output import console

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

    from asyncevents.core.app import App
    from asyncevents.core.worker.worker import Worker

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


def reload_catalog(app: App) -> None:
    """Reload ``app``'s catalog; log the outcome (a failure keeps the catalog in use)."""
    from asyncevents.core.log import get_logger
    from asyncevents.errors import AsyncEventsError

    log = get_logger("asyncevents.serve")
    try:
        catalog = app.reload_catalog()
    except AsyncEventsError as exc:
        log.error("catalog not reloaded: the one in use stays", error=str(exc))
        return
    except Exception as exc:  # a bug, or a plugin's hook failing: still one line
        log.error("catalog not reloaded: the one in use stays",
                  error=f"{type(exc).__name__}: {exc}")
        return
    log.info("catalog reloaded", events=len(catalog.definitions), strict=catalog.strict)


@contextmanager
def reloading_on_sighup(app: App) -> Iterator[None]:
    """While inside, SIGHUP reloads the catalog (on a thread: the handler only starts it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=reload_catalog, args=(app,), name="asyncevents-reload",
                         daemon=True).start()

    previous = signal.signal(signal.SIGHUP, on_hup)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


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
    """Serve the REST API (OpenAPI at /docs) and the web console (/console).

    SIGHUP reloads the event catalog from asyncevents.toml without a restart.
    """
    import uvicorn

    from asyncevents.api.app import create_app
    from asyncevents.core.worker.worker import WorkerLimits

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
        with reloading_on_sighup(app):
            _server(uvicorn.Config(api, host=host, port=port, root_path=root_path,
                                   log_level="info", server_header=False)).run()
    finally:
        if worker is not None and thread is not None:
            worker.stop("server stopped")
            thread.join(timeout=60)
