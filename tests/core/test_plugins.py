"""Plugins: entry points loaded one by one, inline plugins, disabled plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from asyncevents import hookimpl
from asyncevents.core.app import App
from asyncevents.core.plugins import Plugins
from asyncevents.core.settings import Settings
from asyncevents.core.sink import DeliveryRequest, DeliveryResult
from asyncevents.errors import UnknownSink
from tests.helpers import inline_plugins

FAKE_SINK = '''
"""A sink that appends each delivery to the file named by its recipient."""
import json
from asyncevents import DeliveryResult, InvalidRecipient, hookimpl


class FileSink:
    name = "file"

    def __init__(self, settings):
        self.settings = settings

    def validate_recipient(self, recipient):
        if not recipient.startswith("/"):
            raise InvalidRecipient("file sink wants an absolute path")

    def deliver(self, request):
        with open(request.recipient, "a") as fh:
            fh.write(json.dumps({"id": request.delivery_id, "event": request.event_name,
                                 "payload": request.payload}) + "\\n")
        return DeliveryResult.ok()

    def close(self):
        pass


@hookimpl
def register_sinks(register):
    register("file", FileSink)
'''


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding a throwaway distribution with a good and a broken entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fake_file_sink.py").write_text(FAKE_SINK)
    (site / "broken_plugin.py").write_text("raise RuntimeError('this plugin is broken')\n")
    dist = site / "fake_file_sink-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-file-sink\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(
        "[asyncevents]\nbroken = broken_plugin\nfile = fake_file_sink\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_entry_points_load_one_by_one(plugin_site: Path) -> None:
    plugins = Plugins.load()
    sinks = plugins.sinks()
    assert sinks["file"].distribution == "fake-file-sink"
    assert sinks["file"].version == "1.2.3"
    assert sinks["http"].distribution == "asyncevents"  # shipped through the same entry point
    (failure,) = plugins.failures
    assert failure.plugin == "broken" and "this plugin is broken" in failure.error


def test_disabled_plugins_are_not_loaded(plugin_site: Path) -> None:
    plugins = Plugins.load(disabled=["file", "broken"])
    assert "file" not in plugins.sinks()
    assert plugins.failures == []
    with pytest.raises(UnknownSink, match=r"installed sinks: .*http"):
        plugins.sink_info("file")


class MemorySink:
    name: ClassVar[str] = "memory"
    delivered: ClassVar[list[DeliveryRequest]] = []

    def __init__(self, settings: Settings) -> None:
        pass

    def validate_recipient(self, recipient: str) -> None:
        pass

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        self.delivered.append(request)
        return DeliveryResult.ok()

    def close(self) -> None:
        pass


class InlinePlugin:
    @hookimpl
    def register_sinks(self, register: Any) -> None:
        register("memory", MemorySink)

    @hookimpl
    def register_events(self, register: Any) -> None:
        register("inline.created", {"description": "from code"})


def test_inline_plugin_registers_sinks_and_events(make_settings: Any) -> None:
    plugins = inline_plugins()
    plugins.register(InlinePlugin())
    app = App(make_settings(strict_events=True), plugins=plugins)
    assert "inline.created" in app.catalog.names()
    app.subscribe("inline.created", "anywhere", sink="memory", token="t")
    app.publish("inline.created", {"a": 1})
    MemorySink.delivered.clear()
    app.run_worker(_quick())
    assert [r.payload for r in MemorySink.delivered] == [{"a": 1}]
    app.close()


def _quick() -> Any:
    from asyncevents.core.worker.worker import WorkerLimits

    return WorkerLimits(max_idle_time=1.0, time_limit=30)


def _cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PYTHONPATH"] = str(site)
    env["ASYNCEVENTS_STRICT_EVENTS"] = "false"
    env["ASYNCEVENTS_POLLING_INTERVAL"] = "0.05"
    return subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_third_party_sink_through_the_cli(plugin_site: Path, tmp_path: Path) -> None:
    listing = _cli(plugin_site, tmp_path, "sinks", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    names = {s["name"]: s for s in data["sinks"]}
    assert names["file"]["distribution"] == "fake-file-sink"
    assert [f["plugin"] for f in data["failed"]] == ["broken"]

    target = tmp_path / "out.jsonl"
    sub = _cli(plugin_site, tmp_path, "subscribe", "thing.*", str(target), "--sink", "file",
               "--token", "t", "--json")
    assert sub.returncode == 0, sub.stderr
    published = _cli(plugin_site, tmp_path, "publish", "thing.happened", "--data", '{"k": 2}')
    assert published.returncode == 0, published.stderr
    worker = _cli(plugin_site, tmp_path, "worker", "--max-idle-time", "1", "--time-limit", "60")
    assert worker.returncode == 0, worker.stderr
    (line,) = target.read_text().splitlines()
    record = json.loads(line)
    assert record["event"] == "thing.happened" and record["payload"] == {"k": 2}
    trace = _cli(plugin_site, tmp_path, "trace", record["id"], "--json")
    assert trace.returncode == 0, trace.stderr
    document = json.loads(trace.stdout)
    assert document["status"] == "delivered"
    assert [a["number"] for a in document["attempts"]] == [1]
