"""The sink packages in plugins/, installed with pip into a fresh venv, work end to end.

Nothing in the core names them: they are found through the ``asyncevents``
entry point group, listed by ``asyncevents sinks``, and a worker delivers to
them (Redis on 127.0.0.1:6379, SQS on a moto server started here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("asyncevents-sqs", "asyncevents-redis")
REDIS_URL = os.environ.get("ASYNCEVENTS_TEST_REDIS", "redis://127.0.0.1:6379/0")
REGION = "us-east-1"
# One fresh venv for the module (the fixture below): its tests share one xdist worker. The
# fixture's pip install has its own budget (600 s, asserted); pytest-timeout's 120 s default,
# which counts the set-up, must not cut it short when the parallel tier loads the cores.
pytestmark = [pytest.mark.xdist_group("plugin-venv"), pytest.mark.timeout(600)]
_BUILD_LEFTOVERS = shutil.ignore_patterns(
    "*.egg-info", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    "*.db")


def _copy_sources(dest: Path) -> list[Path]:
    """Copies of the core and plugin folders: pip builds in the source tree, leaving build/."""
    core = dest / "asyncevents"
    core.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, core / name)
    shutil.copytree(ROOT / "src", core / "src", ignore=_BUILD_LEFTOVERS)
    plugins = [dest / name for name in PLUGINS]
    for plugin in plugins:
        shutil.copytree(ROOT / "plugins" / plugin.name, plugin, ignore=_BUILD_LEFTOVERS)
    return [core, *plugins]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the core and both plugins pip-installed."""
    base = tmp_path_factory.mktemp("plugin-venv")
    sources = _copy_sources(base / "sources")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASYNCEVENTS_", "PYTHON", "VIRTUAL_ENV"))}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, env=env,
                   timeout=120)
    python = base / "venv" / "bin" / "python"
    core, *plugins = sources
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"{core}[aws]", *map(str, plugins)], env=env, capture_output=True, text=True,
        timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    elapsed = time.monotonic() - started
    assert elapsed < 600, f"installing into a fresh venv took {elapsed:.0f}s"
    return base / "venv"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (an ephemeral port), for the worker subprocess's SQS calls."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _env(moto_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ASYNCEVENTS_", "AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "ASYNCEVENTS_STRICT_EVENTS": "false",
        "ASYNCEVENTS_POLLING_INTERVAL": "0.05",
        "ASYNCEVENTS_REDIS_URL": REDIS_URL,
        "ASYNCEVENTS_SQS_ENDPOINT_URL": moto_endpoint,
        "ASYNCEVENTS_SQS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


def _run(venv: Path, cwd: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(venv / "bin" / "asyncevents"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"asyncevents {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_plugins_are_listed_with_their_distributions(venv: Path, tmp_path: Path,
                                                     moto_endpoint: str) -> None:
    listing = json.loads(_run(venv, tmp_path, _env(moto_endpoint), "sinks", "--json"))
    sinks = {s["name"]: s for s in listing["sinks"]}
    assert listing["failed"] == []
    assert (sinks["sqs"]["distribution"], sinks["sqs"]["version"]) == ("asyncevents-sqs", "0.1.0")
    assert sinks["redis"]["distribution"] == "asyncevents-redis"
    assert sinks["eventbridge"]["distribution"] == "asyncevents"
    assert sinks["http"]["distribution"] == "asyncevents"


@pytest.mark.slow
@pytest.mark.usefixtures("redis_url")  # Redis on 127.0.0.1:6379 (REDIS_URL), or the test fails
def test_plugins_receive_deliveries_through_a_worker(venv: Path, tmp_path: Path,
                                                     moto_endpoint: str) -> None:
    env = _env(moto_endpoint)
    stream = f"asyncevents-test:{uuid.uuid4().hex}"
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    queue_url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for recipient, sink in ((stream, "redis"), (queue_url, "sqs")):
            _run(venv, tmp_path, env, "subscribe", "shop.order.*", recipient, "--sink", sink,
                 "--token", "t", "--json")
        event_id = json.loads(_run(venv, tmp_path, env, "publish", "shop.order.created",
                                   "--data", '{"order": 42}', "--json"))["event_id"]
        _run(venv, tmp_path, env, "worker", "--concurrency", "2", "--max-idle-time", "2",
             "--time-limit", "120")

        entries: list[tuple[str, dict[str, Any]]] = client.xrange(stream)  # type: ignore[assignment]
        assert [fields["id"] for _, fields in entries] == [event_id]
        ((_, fields),) = entries
        assert fields["type"] == "shop.order.created"
        assert json.loads(fields["data"]) == {"order": 42}

        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        (body,) = [json.loads(m["Body"]) for m in messages]
        assert (body["id"], body["type"], body["data"]) == (
            event_id, "shop.order.created", {"order": 42})
        assert body["specversion"] == "1.0"
    finally:
        client.delete(stream)
        client.close()
