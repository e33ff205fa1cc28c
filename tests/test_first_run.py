"""A first run that works as written: payloads from files and stdin, a configuration
file that says what is wrong with it, output a user can type back, one log format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli

CONFIG = ('strict_events = false\nallowed_networks = ["127.0.0.0/8"]\n'
          'transport_url = "sqla+sqlite:///queue.db"\n')


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(CONFIG)
    return tmp_path


def _cli_with_stdin(workdir: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    result = subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=workdir, env=env,
                            input=stdin, capture_output=True, timeout=60)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


def test_publish_reads_data_from_a_file_and_from_stdin(workdir: Path) -> None:
    big = {"items": [{"sku": f"SKU-{n}", "note": "é" * 50} for n in range(3000)]}  # ~500 kB
    (workdir / "order.json").write_text("\ufeff" + json.dumps(big), encoding="utf-8")
    from_file = run_cli("publish", "sales.order.created", "--data", "@order.json", "--json",
                        cwd=workdir)
    assert from_file.returncode == 0, from_file.stderr
    assert len(json.loads(from_file.stdout)["event_id"]) == 36
    for dash in ("-", "@-"):
        from_stdin = _cli_with_stdin(workdir, b'{"id": 42}', "publish", "sales.order.created",
                                     "--data", dash)
        assert from_stdin.returncode == 0, from_stdin.stderr
        assert len(from_stdin.stdout.strip()) == 36


@pytest.mark.parametrize(("data", "stdin", "needles"), [
    ("@missing.json", b"", ["--data", "cannot read missing.json", "No such file"]),
    ("@latin1.json", b"", ["--data", "latin1.json is not UTF-8"]),
    ("-", b"[1, 2]", ["--data", "JSON object"]),
    ("-", b"", ["--data", "not valid JSON"]),
])
def test_publish_data_errors_name_the_option_and_the_file(
        workdir: Path, data: str, stdin: bytes, needles: list[str]) -> None:
    (workdir / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    result = _cli_with_stdin(workdir, stdin, "publish", "sales.order.created", "--data", data)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
