"""``asyncevents worker --processes N``: a supervisor over real worker processes.

The store and the queue are SQLite files in the test's directory; the
receiver is a local HTTP server; the wrong-password case needs RabbitMQ.
Each child runs one thread (``--concurrency 1``): a worker with more defers
a new subscription's deliveries past its share of the threads, which would
make these runs longer and their timing depend on the deliverer, not on the
supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from asyncevents.cli import main
from asyncevents.cli.commands import cli
from asyncevents.cli.processes import worker_arguments
from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


@dataclass
class Receiver:
    """Answers 200 after ``delay`` seconds and keeps (event id, delivery id) of each request."""

    delay: float = 0.0
    hits: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        time.sleep(self.delay)
        with self.lock:
            self.hits.append((json.loads(request.get_data())["id"],
                              request.headers["webhook-id"]))
        return Response("ok")

    def events(self) -> set[str]:
        """The event ids that arrived."""
        with self.lock:
            return {event_id for event_id, _ in self.hits}

    def deliveries(self) -> set[str]:
        """The delivery ids that arrived."""
        with self.lock:
            return {delivery_id for _, delivery_id in self.hits}


@dataclass
class Installation:
    """SQLite store and queue in a directory, the environment of its CLI, one subscription."""

    directory: Path
    env: dict[str, str]
    app: App
    receiver: Receiver

    def publish(self, count: int) -> set[str]:
        """Publish ``count`` events; their ids."""
        return {self.app.publish("proc.test", {"n": n}) for n in range(count)}

    def worker(self, *args: str) -> subprocess.Popen[str]:
        """``asyncevents worker ARGS --json`` in the background, stderr to a file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
        env.update(self.env)
        return subprocess.Popen(
            [sys.executable, "-m", "asyncevents", "worker", *args, "--json"],
            cwd=self.directory, env=env, text=True, stdout=subprocess.PIPE,
            stderr=(self.directory / "stderr.log").open("w"),
        )

    def stderr(self) -> str:
        """What the background worker wrote on stderr."""
        return (self.directory / "stderr.log").read_text()

    def statuses(self) -> dict[str, str]:
        """Each delivery's status, by delivery id."""
        return {d.id: d.status for d in self.app.store.recent_deliveries(limit=10_000)}


@pytest.fixture
def installation(tmp_path: Path, httpserver: HTTPServer) -> Iterator[Installation]:
    values = {
        "transport_url": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
        "database_url": f"sqlite:///{tmp_path / 'store.db'}",
        "polling_interval": "0.05",
        "lease_seconds": "2",  # a killed worker's messages come back within 2 s
    }
    env = {f"ASYNCEVENTS_{key.upper()}": value for key, value in values.items()}
    env |= {"ASYNCEVENTS_ALLOWED_NETWORKS": "127.0.0.0/8", "ASYNCEVENTS_STRICT_EVENTS": "false",
            "ASYNCEVENTS_LOG_LEVEL": "WARNING"}
    app = App(Settings(**values, allowed_networks=["127.0.0.0/8"],  # type: ignore[arg-type]
                       strict_events=False))
    receiver = Receiver()
    httpserver.expect_request("/hook", method="POST").respond_with_handler(receiver)
    app.subscribe("*", httpserver.url_for("/hook"), token="t")
    yield Installation(tmp_path, env, app, receiver)
    app.close()


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]  # the name may hold ')' and spaces
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, or fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[int, dict[str, Any]]:
    """Wait for the supervisor; its exit code and its JSON report."""
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, json.loads(stdout) if stdout.strip() else {}


def test_two_processes_share_the_work_and_sum_their_reports(
        installation: Installation) -> None:
    installation.receiver.delay = 0.1  # one child alone would take 4 s: the other joins in
    published = installation.publish(40)
    result = run_cli("worker", "--processes", "2", "--concurrency", "1", "--max-idle-time", "2",
                     "--json", cwd=installation.directory, env=installation.env, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["processes"]
    assert len(rows) == 2 and len({row["pid"] for row in rows}) == 2
    assert all(row["handled"] > 0 for row in rows), rows  # both children took some
    assert all(row["exit_code"] == 0 and row["restarts"] == 0 for row in rows), rows
    assert all(row["reason"] == "idle" for row in rows), rows
    assert report["handled"] == sum(row["handled"] for row in rows)
    assert report["failed"] == sum(row["failed"] for row in rows) == 0
    assert report["reason"] == "idle"
    assert installation.receiver.events() == published
    assert set(installation.statuses().values()) == {"delivered"}


def test_a_child_killed_with_sigkill_is_restarted_and_nothing_is_lost(
        installation: Installation) -> None:
    installation.receiver.delay = 0.1
    published = installation.publish(60)
    supervisor = installation.worker("--processes", "2", "--concurrency", "1",
                                     "--max-idle-time", "3", "--time-limit", "50")
    try:
        wait_until(lambda: len(children(supervisor.pid)) == 2
                   and len(installation.receiver.hits) >= 5, 30, "two children delivering")
        victim = children(supervisor.pid)[0]
        os.kill(victim, signal.SIGKILL)
        code, report = finish(supervisor, timeout=50)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    stderr = installation.stderr()
    assert code == 0, stderr
    restarted = [row for row in report["processes"] if row["restarts"]]
    assert len(restarted) == 1, report
    assert restarted[0]["restarts"] == 1 and restarted[0]["pid"] != victim
    assert f"pid={victim}" in stderr and "exit_code=-9" in stderr and "restarting" in stderr
    assert installation.receiver.events() == published  # every event arrived
    statuses = installation.statuses()
    assert len(statuses) == len(published) and set(statuses.values()) == {"delivered"}


def test_sigterm_stops_every_child_gracefully(installation: Installation) -> None:
    installation.receiver.delay = 0.5  # deliveries are in flight when the signal comes
    installation.publish(30)
    supervisor = installation.worker("--processes", "2", "--concurrency", "1",
                                     "--time-limit", "50")
    try:
        wait_until(lambda: len(children(supervisor.pid)) == 2
                   and len(installation.receiver.hits) >= 2, 30, "two children delivering")
        pids = children(supervisor.pid)
        supervisor.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code, report = finish(supervisor, timeout=15)
        took = time.monotonic() - started
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    assert code == 0, installation.stderr()
    assert took < 5, f"the supervisor took {took:.1f} s to stop"
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "a child outlived it"
    assert report["reason"] == "signal SIGTERM"
    assert all(row["exit_code"] == 0 and row["restarts"] == 0 for row in report["processes"])
    # What reached the receiver was finished and acked, not left pending.
    statuses = installation.statuses()
    assert {statuses[d] for d in installation.receiver.deliveries()} == {"delivered"}


def test_a_wrong_broker_password_stops_everything_with_one_line(
        installation: Installation, amqp_url: str) -> None:
    env = installation.env | {"ASYNCEVENTS_TRANSPORT_URL": "amqp://guest:S3cr3t@127.0.0.1:5672//"}
    started = time.monotonic()
    result = run_cli("worker", "--processes", "2", "--json", cwd=installation.directory,
                     env=env, timeout=30)
    took = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert took < 10, f"the supervisor took {took:.1f} s to give up"
    assert len(lines) == 1, result.stderr  # no restart warnings, no second copy
    assert lines[0].startswith("error:") and "ACCESS_REFUSED" in lines[0]
    assert "S3cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    ([], ["--concurrency", "1"]),
    # --time-limit and --retention-days are the supervisor's to hand out; --json its own.
    (["--concurrency", "4", "--limit", "10", "--max-idle-time", "2.5", "--time-limit", "9",
      "--retention-days", "7", "--processes", "3", "--json"],
     ["--concurrency", "4", "--limit", "10", "--max-idle-time", "2.5"]),
])
def test_children_get_the_other_worker_options(args: list[str], expected: list[str]) -> None:
    command = cli.commands["worker"]
    with command.make_context("worker", args) as ctx:
        assert worker_arguments(ctx) == expected


@pytest.mark.parametrize(("value", "count"), [("3", 3), ("auto", os.cpu_count() or 1),
                                              (" AUTO ", os.cpu_count() or 1)])
def test_processes_takes_a_number_or_auto(value: str, count: int) -> None:
    with cli.commands["worker"].make_context("worker", ["--processes", value]) as ctx:
        assert ctx.params["processes"] == count


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_processes_refuses_anything_else_in_one_line(value: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--processes", value]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "--processes" in stderr


def test_the_final_report_is_a_json_log_line_with_log_json(installation: Installation) -> None:
    installation.publish(6)
    env = installation.env | {"ASYNCEVENTS_LOG_JSON": "true", "ASYNCEVENTS_LOG_LEVEL": "INFO"}
    result = run_cli("worker", "--processes", "2", "--concurrency", "1", "--max-idle-time", "1",
                     cwd=installation.directory, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no table: every line of the run is a JSON log line
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    reports = [line for line in lines if line["event"] == "worker processes stopped"]
    assert len(reports) == 1, result.stderr
    report = reports[0]
    assert report["level"] == "info" and report["reason"] == "idle"
    assert report["handled"] == 6 and report["failed"] == 0
    assert len(report["processes"]) == 2
    assert all(row["exit_code"] == 0 for row in report["processes"])
