"""``asyncevents workers`` lists live workers; ``stop-workers`` makes every one exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
        assert json.loads(asked.stdout) == {"asked": 2}
        for process in started:
            assert process.wait(timeout=20) == 0  # a graceful exit, within a heartbeat or so
            assert "asked to stop" in (process.stderr.read() if process.stderr else "")
        after = run_cli("workers", "--json", cwd=tmp_path, env=env)
        assert json.loads(after.stdout) == []
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
