"""``asyncevents worker --processes N``: one supervisor, N worker processes, all the cores.

The supervisor starts N children, each the same ``asyncevents worker`` command
without ``--processes`` and with ``--json``, and watches how each one ends:

- exit 0: the child stopped by itself (``--limit``, ``--time-limit``,
  ``--memory-limit``, ``--max-idle-time``, ``stop-workers``, a signal sent to
  it alone). It is not started again; once every child has, the supervisor
  exits 0.
- exit 1 with a one-line ``error: ...`` on stderr: a setting that waiting
  cannot fix (a refused login, a database that does not exist). Starting it
  again would fail the same way, so the supervisor stops the others and exits
  1 with that same line.
- anything else (killed by a signal the supervisor did not send: a crash, the
  OOM killer, ``kill -9``; another exit code): the child is started again,
  at once if it had run a while, else after 1 s, doubling up to 30 s while
  it keeps dying young. A message it held goes back to the queue (a lease
  runs out, or the broker hands it out again), so nothing is lost.

Every child gets the other options of the command, so ``--limit``,
``--memory-limit`` and ``--max-idle-time`` count per process; ``--time-limit``
counts from the supervisor's start (a restarted child gets what is left), and
``--retention-days`` housekeeping runs in the first child only.

Children run in their own session, so a terminal's signals reach only the
supervisor: SIGTERM, SIGINT or SIGHUP make it pass SIGTERM on to every child
and wait while they finish their deliveries and ack them, then exit 0; a
second SIGINT kills them (exit 130). Children's log lines are passed through
to the supervisor's stderr as they come.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

import click

from asyncevents.cli.context import get_app
from asyncevents.cli.output import console, print_json, print_table
from asyncevents.errors import ConfigError

__all__ = ["Supervisor", "process_count", "supervise", "worker_arguments"]


def _log() -> Any:
    """The supervisor's logger (structlog is imported by the first line logged)."""
    from asyncevents.core.log import get_logger

    return get_logger("asyncevents.processes")


#: A child that dies sooner than this after it started is restarted after a back-off.
YOUNG = 10.0
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0
_TURN = 0.1
# The supervisor's own options, and those it hands out itself.
_NOT_PASSED_ON = frozenset({"processes", "as_json", "time_limit", "retention_days"})
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_write_lock = threading.Lock()


def process_count(_ctx: click.Context, _param: click.Parameter, value: object) -> int:
    """The ``--processes`` callback: a positive integer, or ``auto`` for ``os.cpu_count()``."""
    text = str(value).strip().lower()
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'auto'") from None
    if count < 1:
        raise click.BadParameter(f"{count} is not at least 1")
    return count


def worker_arguments(ctx: click.Context, skip: Collection[str] = _NOT_PASSED_ON) -> list[str]:
    """The command-line options that give a child the worker options of ``ctx``.

    Built from the command's own parameters, so an option added to ``worker``
    later reaches the children without a change here.
    """
    arguments: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name in skip:
            continue
        value = ctx.params.get(param.name)
        if value is None:
            continue
        if param.is_flag:
            if param.is_bool_flag and param.secondary_opts and not value:
                arguments.append(param.secondary_opts[0])
            elif value == param.flag_value:
                arguments.append(param.opts[0])
            continue
        if param.count:
            arguments.extend([param.opts[0]] * int(value))
            continue
        for item in value if param.multiple else [value]:
            parts = item if param.nargs != 1 else [item]
            arguments.extend([param.opts[0], *(str(part) for part in parts)])
    return arguments


class _Child:
    """One worker process: its stdout kept for the report, its stderr passed on."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", start_new_session=True,
        )
        self.started = time.monotonic()
        self.error_line: str | None = None
        self._stdout: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._keep, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._pass_on, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def _keep(self, stream: IO[str]) -> None:
        self._stdout.append(stream.read())

    def _pass_on(self, stream: IO[str]) -> None:
        for line in stream:
            # Held back: the supervisor prints the one line itself, once for all.
            if line.startswith("error:") and self.error_line is None:
                self.error_line = line.rstrip("\n")
                continue
            _write(line)

    def finish(self) -> dict[str, Any]:
        """Its ``--json`` report once it has exited (empty when it printed none)."""
        for reader in self._readers:
            reader.join(timeout=5)
        try:
            report = json.loads("".join(self._stdout))
        except json.JSONDecodeError:
            return {}
        return report if isinstance(report, dict) else {}

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless it has already exited."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):  # it exited in between
                self.process.send_signal(signum)


def _write(line: str) -> None:
    with _write_lock:
        sys.stderr.write(line)
        sys.stderr.flush()


@dataclass
class _Slot:
    """One of the N places: the child now in it and what its children did."""

    index: int
    child: _Child | None = None
    pid: int = 0
    handled: int = 0
    failed: int = 0
    reason: str = ""
    exit_code: int | None = None
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    done: bool = False
    told: signal.Signals | None = None
    """The last signal the supervisor sent the child now in it."""

    def row(self) -> dict[str, Any]:
        """Its line of the combined report."""
        return {"pid": self.pid, "handled": self.handled, "failed": self.failed,
                "reason": self.reason, "exit_code": self.exit_code,
                "restarts": self.restarts}


class Supervisor:
    """Runs ``count`` worker processes until they stop, a signal, or a setting error.

    ``arguments`` are the options every child gets; ``first_only`` those only
    the first one gets (housekeeping that one process is enough for);
    ``time_limit`` is the whole run's, so a restarted child gets what is left.
    """

    def __init__(self, count: int, arguments: list[str], *, time_limit: float | None = None,
                 first_only: list[str] | None = None) -> None:
        self.count = count
        self.arguments = list(arguments)
        self.time_limit = time_limit
        self.first_only = list(first_only or [])
        self.slots = [_Slot(index) for index in range(count)]
        #: Why the run ended (a signal, or the children's own reasons).
        self.reason = ""
        #: The ``error: ...`` line of a child that met a setting error.
        self.error: str | None = None
        #: Whether a second SIGINT killed the children.
        self.forced = False
        self._stopping = False
        self._started = time.monotonic()
        # Signals are only noted by the handler and acted on by the loop: a
        # handler that wrote a log line or took a lock could interrupt the
        # main thread doing the same.
        self._signals: list[int] = []

    def run(self) -> None:
        """Start the children and supervise them until every one has ended."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        self._started = time.monotonic()
        try:
            for slot in self.slots:
                self._start(slot)
            while not all(slot.done for slot in self.slots):
                time.sleep(_TURN)
                self._take_signals()
                for slot in self.slots:
                    self._watch(slot)
        finally:
            self._leave_none_behind()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if not self.reason:
            reasons = sorted({slot.reason for slot in self.slots if slot.reason})
            self.reason = ", ".join(reasons) or "stopped"

    def report(self) -> dict[str, Any]:
        """The combined report: totals and one row per process."""
        rows = [slot.row() for slot in self.slots]
        return {"handled": sum(r["handled"] for r in rows),
                "failed": sum(r["failed"] for r in rows),
                "reason": self.reason, "processes": rows}

    def _argv(self, slot: _Slot) -> list[str] | None:
        argv = [sys.executable, "-m", "asyncevents", "worker", *self.arguments]
        if self.time_limit is not None:
            left = self.time_limit - (time.monotonic() - self._started)
            if left <= 0:
                return None
            argv += ["--time-limit", repr(round(left, 3))]
        if slot.index == 0:
            argv += self.first_only
        return [*argv, "--json"]

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        if self._stopping:
            slot.done = True
            return
        argv = self._argv(slot)
        if argv is None:
            slot.done, slot.reason = True, "time limit reached"
            return
        slot.child, slot.told = _Child(argv), None
        slot.pid = slot.child.pid

    def _watch(self, slot: _Slot) -> None:
        if slot.done:
            return
        if slot.child is None:
            if self._stopping:
                slot.done = True
            elif slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                self._start(slot)
            return
        code = slot.child.process.poll()
        if code is None:
            self._tell(slot)
            return
        child, slot.child = slot.child, None
        report = child.finish()
        slot.handled += int(report.get("handled") or 0)
        slot.failed += int(report.get("failed") or 0)
        slot.reason = str(report.get("reason") or "") or _ending(code)
        slot.exit_code = code
        if self._stopping or code == 0:
            slot.done = True
        elif code == 1 and child.error_line is not None:
            slot.done, slot.reason = True, child.error_line.removeprefix("error:").strip()
            self.error = child.error_line
            self._stop(quietly=True)
        else:
            self._plan_restart(slot, child, code)
        if child.error_line is not None and self.error != child.error_line:
            _write(child.error_line + "\n")  # not the line the supervisor ends with

    def _plan_restart(self, slot: _Slot, child: _Child, code: int) -> None:
        lived = time.monotonic() - child.started
        slot.backoff = (0.0 if lived >= YOUNG
                        else min(_MAX_BACKOFF, max(_FIRST_BACKOFF, slot.backoff * 2)))
        slot.restarts += 1
        slot.restart_at = time.monotonic() + slot.backoff
        slot.reason = _ending(code)
        _log().warning("worker process died, restarting it", pid=child.pid, exit_code=code,
                    reason=slot.reason, restarts=slot.restarts, restart_in=slot.backoff)

    def _stop(self, quietly: bool = False, why: str = "") -> None:
        if self._stopping:
            return
        self._stopping = True
        self.reason = why
        if not quietly:
            _log().info("stopping the worker processes", reason=why,
                     pids=[s.child.pid for s in self.slots if s.child is not None])
        for slot in self.slots:
            self._tell(slot)

    def _tell(self, slot: _Slot) -> None:
        """Send the child what the supervisor's state asks for, once."""
        wanted = (signal.SIGKILL if self.forced
                  else signal.SIGTERM if self._stopping else None)
        if wanted is not None and slot.child is not None and slot.told != wanted:
            slot.child.signal(wanted)
            slot.told = wanted

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _take_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if self._stopping and signum == signal.SIGINT and not self.forced:
                self.forced = True
                _log().warning("second SIGINT: killing the worker processes")
                for slot in self.slots:
                    self._tell(slot)
            else:
                self._stop(why=f"signal {signal.Signals(signum).name}")

    def _leave_none_behind(self) -> None:
        # Only after an error in the supervisor itself: no child outlives it.
        live = [s.child for s in self.slots if s.child is not None]
        for child in live:
            child.signal(signal.SIGTERM)
        for child in live:
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.signal(signal.SIGKILL)
                child.process.wait()


def _ending(code: int) -> str:
    """How a child that printed no report ended, from its exit code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}" if code else ""


def supervise(ctx: click.Context, count: int) -> None:
    """Run the ``worker`` command of ``ctx`` as ``count`` supervised processes.

    Prints the combined report (JSON with ``--json``; with ``ASYNCEVENTS_LOG_JSON``
    it is one JSON log line on stderr, as every other line of the run, and
    nothing goes to stdout); raises ``ConfigError`` with a child's own line when a
    setting is wrong, ``click.Abort`` when a second SIGINT killed the children.
    """
    app = get_app()  # the settings are checked, and logging set up, before any child starts
    params = ctx.params
    retention = params.get("retention_days")
    supervisor = Supervisor(
        count, worker_arguments(ctx), time_limit=params.get("time_limit"),
        first_only=[] if retention is None else ["--retention-days", repr(retention)],
    )
    supervisor.run()
    if supervisor.error is not None:
        raise ConfigError(supervisor.error.removeprefix("error:").strip())
    report = supervisor.report()
    if params.get("as_json"):
        print_json(report)
    elif app.settings.log_json:
        _log().info("worker processes stopped", **report)
    else:
        rows = [{**row, "exit code": row["exit_code"]} for row in report["processes"]]
        print_table(rows, ("pid", "handled", "failed", "reason", "exit code", "restarts"),
                    title="Worker processes")
        console.print(f"{report['handled']} handled, {report['failed']} failed "
                      f"({report['reason']})")
    if supervisor.forced:
        raise click.Abort()
