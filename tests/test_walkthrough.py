"""docs/architecture.md's walkthrough is the path real events take, not only a list of names.

``tests/test_architecture.py`` checks that every ``file:function`` the page names
exists where it says. This module runs real events through the system and
checks that each of them was also *called* on the way:

- on the SQL queue (``sqla+sqlite``) and on RabbitMQ: ``App.publish``,
  ``App.publish_many`` and a delayed publish; a receiver that fails its first
  attempt (so a retry is scheduled and comes back on the ``deliver`` route); a
  filtered subscription; a synchronous sink (``python``, run in the thread pool);
  a fan-out wider than the deliveries an event's dispatch attempts itself (the
  rest goes to the ``deliver`` route); then a worker runs until drained;
- on ``memory://``, a transport without delays of its own: a delayed publish
  waits in the database schedule.

Calls are seen by a profiler (``sys.setprofile`` in this thread and
``threading.setprofile`` for every thread started after it: the worker's, its
engine's event loop, its I/O and sink thread pools), which records the code
object of each Python frame entered; the page's names are matched on their
code objects, so a function imported by name elsewhere counts too. The hops of
the walkthrough (sections 1 to 5) must be called while the events run (from
the first publish to the worker's end), not while the subscriptions are made;
the extension points may be reached while the application is set up too. For
a class the page names, one of its instances (or a subclass's) must be built;
for a hook specification (``core/hookspecs.py``), one of its implementations
must have run (pluggy calls those, never the specification itself).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from pytest_httpserver import HTTPServer

from asyncevents import Event, handler
from asyncevents.core.app import App
from asyncevents.core.delivery import engine as engine_module
from asyncevents.core.plugins import Plugins
from asyncevents.core.subscribing.handler_sync import sync_handler_subscriptions
from asyncevents.core.worker.worker import WorkerLimits, WorkerReport
from tests.helpers import Recorder, delete_amqp_queues

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
NAME = re.compile(r"`([a-z_/]+\.py):([A-Za-z_][\w.]*)`")
HOPS, _, EXTENSIONS = DOC.partition("## Where the extension points sit")
#: The walkthrough's hops: called while the events run.
WALK = sorted(set(NAME.findall(HOPS)))
#: The extension points: reached while the application is set up, or later.
ANYTIME = sorted(set(NAME.findall(EXTENSIONS)) - set(WALK))

TOKEN = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
CONCURRENCY = 4
#: A fan-out one wider than what an event's own dispatch attempts.
FANOUT = max(engine_module.INLINE_FANOUT, CONCURRENCY) + 1
RETRIES: dict[str, Any] = {"backoff": "fixed", "backoff_base": 0.05}
#: The events the python handler below was given.
HANDLED: list[Event] = []


@handler("shop.order.*")
def on_order(event: Event) -> None:
    """A synchronous sink (``python``): the worker calls it in its thread pool."""
    HANDLED.append(event)


# --- what was called -------------------------------------------------------------


class Calls:
    """The code objects entered in every thread, by phase (``setup`` or ``run``).

    Install it before the application is made: ``threading.setprofile`` reaches
    only the threads started after it.
    """

    def __init__(self) -> None:
        self.phases: dict[str, set[CodeType]] = {}
        self._current: set[CodeType] | None = None

    def phase(self, name: str) -> None:
        """Record what is called from now on under ``name``."""
        self._current = self.phases.setdefault(name, set())

    def _hook(self, frame: FrameType, event: str, _arg: object) -> None:
        current = self._current
        if current is None:
            sys.setprofile(None)  # a thread that outlived the recording stops here
        elif event == "call":
            current.add(frame.f_code)

    @contextmanager
    def recording(self) -> Iterator[Calls]:
        """Profile this thread, and every thread started meanwhile, until the end."""
        self.phase("setup")
        threading.setprofile(self._hook)
        sys.setprofile(self._hook)
        try:
            yield self
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
            self._current = None


def codes(path: str, name: str, plugins: Plugins) -> set[CodeType]:
    """The code objects whose call means that ``path:name`` was called.

    A function or method: its own (unwrapped; a property's getter, a static or
    class method's function). A class: the ``__init__`` of it or of a subclass.
    A hook specification: every implementation's, as registered in ``plugins``.
    """
    *parents, last = name.split(".")
    try:
        owner: Any = importlib.import_module("asyncevents." + path[:-3].replace("/", "."))
        for part in parents:
            owner = getattr(owner, part)
        target = inspect.getattr_static(owner, last)
    except (ImportError, AttributeError):
        return set()  # not there at all: test_architecture.py says so
    if isinstance(target, staticmethod | classmethod):
        target = target.__func__
    elif isinstance(target, property):
        target = target.fget
    elif isinstance(target, cached_property):
        target = target.func
    if isinstance(target, type):
        found = set()
        classes = [target]
        while classes:
            cls = classes.pop()
            classes.extend(cls.__subclasses__())
            init = vars(cls).get("__init__")
            if inspect.isfunction(init):
                found.add(inspect.unwrap(init).__code__)
        return found
    if getattr(target, "asyncevents_spec", None) is not None:  # a hook specification
        return {inspect.unwrap(impl.function).__code__
                for impl in getattr(plugins.hook, last).get_hookimpls()}
    return {inspect.unwrap(target).__code__}


# --- the scenarios -----------------------------------------------------------------


def _drain(app: App) -> WorkerReport:
    """Run a worker until nothing is left to do (burst when the worker has it)."""
    if "burst" in {f.name for f in dataclasses.fields(WorkerLimits)}:
        limits = WorkerLimits(concurrency=CONCURRENCY, burst=True, time_limit=30)
    else:  # pragma: no cover - before WorkerLimits(burst=True)
        limits = WorkerLimits(concurrency=CONCURRENCY, max_idle_time=1.5, time_limit=30)
    return app.run_worker(limits)


def _statuses(app: App) -> dict[str, int]:
    found: dict[str, int] = {}
    for delivery in app.store.recent_deliveries(1000):
        found[delivery.status] = found.get(delivery.status, 0) + 1
    return found


def _full_walk(settings: Any, httpserver: HTTPServer, calls: Calls) -> App:
    """Every hop of the walkthrough, over a transport with delays of its own."""
    app = App(settings, handler_modules=[__name__])  # on_order: a python subscription
    recorder = Recorder(httpserver)
    flaky = recorder.route("/flaky", statuses=[500])  # the first attempt fails: a retry
    app.subscribe("shop.order.created", flaky, token=TOKEN)
    app.subscribe("shop.order.*", recorder.route("/big"), token=TOKEN,
                  filter="data.total:[100 TO *]")
    sync_handler_subscriptions(app)  # what the worker does again when it starts
    fan = recorder.route("/fan")
    for n in range(FANOUT):
        app.subscribe("shop.fanout", f"{fan}?n={n}", token=TOKEN)

    calls.phase("run")
    app.publish("shop.order.created", {"total": 150})
    app.publish_many([("shop.order.paid", {"total": 50}), ("shop.fanout", {"n": 1})])
    app.publish("shop.order.shipped", {"total": 200}, delay=0.2)
    report = _drain(app)
    calls.phase("after")

    assert report.failed == 0 and report.dropped == 0, report
    # Four events, the retry of /flaky and the fan-out's delivery that its
    # dispatch left to the deliver route.
    assert report.handled == 6, report
    assert len(recorder.on("/flaky")) == 2  # the failure, then its retry
    assert len(recorder.on("/big")) == 2  # the filter left the total of 50 out
    assert len(recorder.on("/fan")) == FANOUT
    assert len(HANDLED) == 3
    assert _statuses(app) == {"delivered": 1 + 2 + 3 + FANOUT}
    return app


def _database_schedule(settings: Any, httpserver: HTTPServer, calls: Calls) -> App:
    """A transport without delays of its own: a delayed publish waits in the store."""
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("shop.later", recorder.route("/later"), token=TOKEN)

    calls.phase("run")
    app.publish("shop.later", {"n": 1}, delay=0.2)
    report = _drain(app)
    calls.phase("after")

    assert report.failed == 0 and report.handled == 1, report
    assert len(recorder.on("/later")) == 1
    return app


def _walk(walk: Callable[[Any, HTTPServer, Calls], App], settings: Any,
          httpserver: HTTPServer) -> tuple[Calls, App]:
    HANDLED.clear()
    httpserver.clear()
    calls = Calls()
    with calls.recording():  # before the App is made: its threads are profiled too
        app = walk(settings, httpserver, calls)
        app.close()
    return calls, app


def test_every_function_the_walkthrough_names_is_called_on_the_way(
        make_settings: Callable[..., Any], amqp_url: str, httpserver: HTTPServer,
        tmp_path: Path) -> None:
    # What test_architecture.py asks of the page too: a walkthrough, not a few names.
    assert len(WALK) + len(ANYTIME) >= 40, (WALK, ANYTIME)

    def settings(kind: str, transport_url: str | None = None) -> Any:
        folder = tmp_path / kind
        folder.mkdir()
        return make_settings(
            database_url=f"sqlite:///{folder / 'store.db'}",
            transport_url=transport_url or f"sqla+sqlite:///{folder / 'queue.db'}", **RETRIES)

    amqp = settings("amqp", amqp_url)
    scenarios = {
        "sql queue": (_full_walk, settings("sql")),
        "rabbitmq": (_full_walk, amqp),
        "memory://": (_database_schedule, settings("memory", "memory://")),
    }
    called: set[tuple[str, str]] = set()
    try:
        for walk, values in scenarios.values():
            calls, app = _walk(walk, values, httpserver)
            run = calls.phases["run"]
            anytime = run | calls.phases["setup"]
            called.update((path, name) for path, name in WALK
                          if codes(path, name, app.plugins) & run)
            called.update((path, name) for path, name in ANYTIME
                          if codes(path, name, app.plugins) & anytime)
    finally:
        delete_amqp_queues(amqp)

    missing = [f"{path}:{name}" for path, name in [*WALK, *ANYTIME] if (path, name) not in called]
    assert not missing, (
        f"docs/architecture.md names {len(missing)} function(s) that no event called on its way "
        f"(scenarios: {', '.join(scenarios)}); call them, or name what the code calls:\n  "
        + "\n  ".join(missing))
