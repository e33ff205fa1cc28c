"""A sink plugin uninstalled mid-run, beside a subscription that keeps working.

A tiny plugin distribution, ``asyncevents-fault-sink`` (entry point and sink
``faulthttp``: the HTTP sink under another name), is installed in the fault's
own directory and put on the workers' ``PYTHONPATH``; nothing touches the
venv. One subscription uses it, another the built-in ``http`` sink. A first
worker delivers a batch to both. Then the distribution is uninstalled (its
``.dist-info`` and module removed, as ``pip uninstall`` does), that worker is
stopped, more events are published, and a new worker, which no longer finds
the sink, takes them.

Every new delivery of the orphaned subscription must end ``dead`` after the
retry policy's attempts, each attempt saying ``unknown sink 'faulthttp'``;
the ``http`` subscription must get every event; the new worker must not loop
and must exit by itself on ``--max-idle-time``.

The full form uses the default retry policy (retries after 1, 4, 9, 16 and 25
s); the worker's ``--max-idle-time`` is 15 s, since a worker only waits for a
retry due within its idle time (the 25 s gap needs at least 12.5 s). The
short form gives the orphaned subscription alone a retry policy of one retry
after 0.2 s, so ``make test`` does not wait a minute.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
from pathlib import Path
from types import ModuleType

from asyncevents.core.plugins import Plugins
from faults.figures import Row, tally
from faults.receiver import Receiver
from faults.stack import TOKEN, Stack

__all__ = ["SINK", "install_plugin", "run", "uninstall_plugin"]

#: The entry point and sink name of the plugin that goes away.
SINK = "faulthttp"
_DIST = "asyncevents_fault_sink"
_KEPT = "/ok/kept"
_GONE = "/ok/gone"
_SHORT_POLICY = {"max_deaths": 1, "base": 0.2}
_MODULE = '''"""A sink for the fault suite: the HTTP sink under the name 'faulthttp'."""

from asyncevents.core.hookspecs import hookimpl
from asyncevents.sinks.http import HttpSink


class FaultHttpSink(HttpSink):
    """The HTTP sink, named differently."""

    name = "faulthttp"


@hookimpl
def register_sinks(register):
    """Register the sink."""
    register("faulthttp", FaultHttpSink)
'''


def install_plugin(site: Path) -> Path:
    """Install the plugin distribution into ``site`` (a ``PYTHONPATH`` entry); its module."""
    site.mkdir(parents=True, exist_ok=True)
    module = site / f"{_DIST}.py"
    module.write_text(_MODULE)
    info = site / f"{_DIST}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: asyncevents-fault-sink\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[asyncevents]\n{SINK} = {_DIST}\n")
    (info / "RECORD").write_text(f"{_DIST}.py,,\n{info.name}/METADATA,,\n")
    return module


def uninstall_plugin(site: Path) -> None:
    """Remove the distribution from ``site``, as ``pip uninstall`` would."""
    shutil.rmtree(site / f"{_DIST}-1.0.dist-info", ignore_errors=True)
    (site / f"{_DIST}.py").unlink(missing_ok=True)
    shutil.rmtree(site / "__pycache__", ignore_errors=True)


def _load(module: Path) -> ModuleType:
    """The plugin module, loaded without touching this process's ``sys.path``."""
    spec = importlib.util.spec_from_file_location(f"{_DIST}_in_process", module)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def run(transport: str, directory: Path, *, short: bool = False) -> Row:
    """Uninstall a sink plugin between two workers; count, and read the attempts."""
    row = Row(f"sink plugin uninstalled mid-run{' (1 retry)' if short else ''}", transport)
    before_n, after_n = (5, 10) if short else (20, 40)
    idle = 3.0 if short else 15.0
    site = directory / "site"
    receiver = Receiver()
    try:
        # The publishing process has the plugin too (a subscription needs its sink).
        plugins = Plugins.load()
        plugins.register(_load(install_plugin(site)), name=SINK)
        with Stack.open(transport, directory) as stack:
            stack.plugins = plugins
            env = {"PYTHONPATH": os.pathsep.join(
                p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
            stack.subscribe(f"http://127.0.0.1:{receiver.port}{_KEPT}")
            orphan = stack.app.subscribe(
                "*", f"http://127.0.0.1:{receiver.port}{_GONE}", sink=SINK, token=TOKEN,
                retry_policy=_SHORT_POLICY if short else None).id
            first = stack.worker(env=env, name="with-plugin")
            before = [stack.app.publish("fault.sinkgone", {"n": n}) for n in range(before_n)]
            arrived_first = receiver.wait_for(2 * before_n, timeout=60)
            uninstall_plugin(site)
            first.signal(signal.SIGTERM)
            first_code = first.wait(timeout=30)
            after = [stack.app.publish("fault.sinkgone", {"n": n})
                     for n in range(before_n, before_n + after_n)]
            started = time.monotonic()
            second = stack.worker("--max-idle-time", str(idle), "--time-limit", "300",
                                  env=env, name="without-plugin")
            all_dead_after: float | None = None
            while second.alive() and time.monotonic() - started < 330:
                if all_dead_after is None and _dead(stack, orphan, after) == after_n:
                    all_dead_after = time.monotonic() - started
                time.sleep(0.25)
            code = second.wait(timeout=30)
            took = time.monotonic() - started
            if code is None:
                second.kill()
            if all_dead_after is None and _dead(stack, orphan, after) == after_n:
                all_dead_after = took
            outcome = _orphan_outcome(stack, orphan, after)
            log = second.text()
        hits = receiver.snapshot()
    finally:
        receiver.close()
    row.add(tally(hits, before + after, [_KEPT]))
    row.add(tally(hits, before, [_GONE]))
    policy = "one retry after 0.2 s (the subscription's own policy)" if short else \
        "the default policy (retries after 1, 4, 9, 16, 25 s)"
    attempts, reasons, dead, wrong = outcome
    row.notes.append(
        f"counted: {before_n} events before the uninstall to both subscriptions, {after_n} "
        f"after it to the 'http' one; the {after_n} for '{SINK}' after it, with {policy}: "
        f"{dead} dead after {attempts} attempts in all; the worker without the plugin had "
        "them all dead "
        + (f"{all_dead_after:.1f} s" if all_dead_after is not None else "never")
        + f" after it started and exited (code {code}) on --max-idle-time {idle:g} s "
        f"after {took:.1f} s")
    if reasons:
        row.notes.append(f"attempt error: {reasons[0][:160]}")
    gone_late = [h for h in hits if h.path == _GONE and h.event_id in set(after)]
    row.check(arrived_first, "the first batch did not reach both subscriptions")
    row.check(first_code == 0, f"the first worker exited with {first_code} on SIGTERM")
    row.check(dead == after_n, f"only {dead} of {after_n} orphaned deliveries are dead")
    per = (_SHORT_POLICY["max_deaths"] if short else 5) + 1
    row.check(attempts == per * after_n,
              f"{attempts} attempts for {after_n} orphaned deliveries, not {per} each")
    row.check(not wrong, f"{len(wrong)} attempts without the reason, e.g. {wrong[:1]}")
    row.check(not gone_late, f"{len(gone_late)} requests reached the uninstalled sink's path")
    row.check(code == 0, f"the worker without the plugin exited with {code}")
    row.check("worker stopped" in log and "reason=idle" in log,
              "the worker without the plugin did not stop on --max-idle-time")
    return row


def _dead(stack: Stack, subscription: str, events: list[str]) -> int:
    wanted = set(events)
    return sum(1 for d in stack.app.store.recent_deliveries(limit=10 * len(events) + 100)
               if d.subscription_id == subscription and d.event_id in wanted
               and d.status == "dead")


def _orphan_outcome(stack: Stack, subscription: str, events: list[str]
                    ) -> tuple[int, list[str], int, list[str]]:
    """(attempts, their errors, dead deliveries, errors lacking the reason)."""
    wanted = set(events)
    attempts = dead = 0
    reasons: list[str] = []
    wrong: list[str] = []
    for delivery in stack.app.store.recent_deliveries(limit=10 * len(events) + 100):
        if delivery.subscription_id != subscription or delivery.event_id not in wanted:
            continue
        dead += delivery.status == "dead"
        for attempt in stack.app.store.list_attempts(delivery.id):
            attempts += 1
            error = attempt.error or ""
            reasons.append(error)
            if f"unknown sink '{SINK}'" not in error:
                wrong.append(error)
    return attempts, reasons, dead, wrong
