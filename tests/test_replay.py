"""Search, trace and replay through the CLI, over a real worker."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer

from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from tests.helpers import Recorder, drain
from tests.killrun import _env


def _cli(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=cwd,
                            env=_env(settings), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_search_trace_and_replay_dead_deliveries(make_settings: Any, httpserver: HTTPServer,
                                                 tmp_path: Path) -> None:
    settings = make_settings(max_deaths=1, backoff="fixed", backoff_base=0.1)
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("customer.*", recorder.route("/down", [500] * 4), token="t")
    app.subscribe("order.*", recorder.route("/fine"), token="t")
    app.publish("customer.created", {"email": "a@example.com"})
    app.publish("customer.deleted", {"email": "b@example.com"})
    app.publish("order.created", {"id": 1})
    drain(app)

    found = json.loads(_cli(settings, tmp_path, "search", "status:dead", "--json").stdout)
    assert sorted(r["event_name"] for r in found) == ["customer.created", "customer.deleted"]
    assert {r["attempts"] for r in found} == {2}
    rows = list(csv.DictReader(io.StringIO(
        _cli(settings, tmp_path, "search", "data.email:b@*", "--csv").stdout)))
    assert [r["event_name"] for r in rows] == ["customer.deleted"]

    query = "event_name:customer.* AND status:dead"
    dry = json.loads(_cli(settings, tmp_path, "replay", "--query", query, "--dry-run",
                          "--json").stdout)
    assert dry == {"would_replay": 2}
    assert len(recorder.hits) == 5  # nothing was sent by the dry run
    done = json.loads(_cli(settings, tmp_path, "replay", "--query", query, "--json").stdout)
    assert done == {"replayed": 2}
    drain(app)  # the receiver is back up: 4 failures were scripted, 4 used

    for row in found:
        trace = json.loads(_cli(settings, tmp_path, "trace", row["uuid"], "--json").stdout)
        assert trace["status"] == "delivered"
        numbers = [(a["number"], a["success"], a["replay"]) for a in trace["attempts"]]
        assert numbers == [(1, False, False), (2, False, False), (3, True, True)]
        assert trace["uuid"] == row["uuid"] and trace["data"] == row["data"]
    replayed_ids = {h.headers["webhook-id"] for h in recorder.on("/down")}
    assert replayed_ids == {r["uuid"] for r in found}  # same webhook-id after the replay
    app.close()


def test_cleanup_command(make_settings: Any, httpserver: HTTPServer, tmp_path: Path) -> None:
    settings = make_settings()
    app = App(settings)
    recorder = Recorder(httpserver)
    app.subscribe("*", recorder.route("/ok"), token="t")
    app.publish("x.y", {})
    drain(app)
    kept = json.loads(_cli(settings, tmp_path, "cleanup", "--days", "1", "--json").stdout)
    assert kept == {"removed": 0}
    gone = json.loads(_cli(settings, tmp_path, "cleanup", "--days", "0", "--json").stdout)
    assert gone == {"removed": 1}
    assert app.store.recent_deliveries() == []
    app.close()
