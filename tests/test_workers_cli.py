"""``asyncevents workers`` lists workers (a silent one as gone); ``stop-workers`` makes every
live one exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from asyncevents.core.clock import utcnow
from asyncevents.core.store import Store
from asyncevents.core.store.schema import workers
from tests.helpers import run_cli


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env.update(ASYNCEVENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
               ASYNCEVENTS_TRANSPORT_URL=f"sqla+sqlite:///{tmp_path / 'queue.db'}")
    return env


def test_workers_are_listed_and_stopped_on_request(tmp_path: Path) -> None:
    env = _env(tmp_path)
    # The schema first: processes that create it at the same moment race (one waits).
    assert run_cli("migrate", cwd=tmp_path, env=env).returncode == 0
    started = [subprocess.Popen([sys.executable, "-m", "asyncevents", "worker",
                                 "--concurrency", str(n)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for n in (1, 3)]
    try:
        deadline = time.monotonic() + 30
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(listed) < 2:
            result = run_cli("workers", "--json", cwd=tmp_path, env=env)
            assert result.returncode == 0, result.stderr
            listed = json.loads(result.stdout)
            time.sleep(0.3)
        assert sorted(w["pid"] for w in listed) == sorted(p.pid for p in started)
        assert sorted(w["concurrency"] for w in listed) == [1, 3]
        assert all(w["queues"] == ["trigger", "deliver"] for w in listed)

        asked = run_cli("stop-workers", "--json", cwd=tmp_path, env=env)
        assert json.loads(asked.stdout) == {"asked": 2, "gone": 0}
        for process in started:
            assert process.wait(timeout=20) == 0  # a graceful exit, within a heartbeat or so
            assert "asked to stop" in (process.stderr.read() if process.stderr else "")
        after = run_cli("workers", "--json", cwd=tmp_path, env=env)
        assert json.loads(after.stdout) == []
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()


def test_a_silent_worker_is_gone_and_not_counted(tmp_path: Path) -> None:
    env = _env(tmp_path)
    store = Store.open(env["ASYNCEVENTS_DATABASE_URL"])
    # One worker killed 20 s ago (three missed heartbeats are 15 s), one beating.
    for worker_id, pid in (("killed", 4242), ("alive", 4343)):
        store.register_worker(worker_id, host="h", pid=pid, queues=["trigger"], concurrency=1)
    with store.begin() as conn:
        conn.execute(sa.update(workers).where(workers.c.id == "killed").values(
            heartbeat_at=utcnow() - timedelta(seconds=20)))

    def cli(*args: str) -> str:
        store.worker_heartbeat("alive", in_flight=0, handled=0)  # it beats on
        result = run_cli(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = json.loads(cli("workers", "--json"))
    assert {w["pid"]: w["gone"] for w in listed} == {4242: True, 4343: False}
    table = cli("workers")
    cells = [[cell.strip() for cell in line.split("│")] for line in table.splitlines()
             if "4242" in line or "4343" in line]
    assert {row[3]: row[-2] for row in cells} == {"4242": "gone", "4343": "live"}, table
    assert json.loads(cli("stop-workers", "--json")) == {"asked": 1, "gone": 1}
    assert cli("stop-workers").startswith("0 worker(s) asked to stop")
    store.close()
