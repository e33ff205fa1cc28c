"""The README's quick start ("Using it") runs as written, in a fresh directory.

The first ``sh`` block under "## Using it" is run by bash, stopping at the
first command that fails, with this interpreter's ``python`` and
``asyncevents`` first on the PATH and no ``ASYNCEVENTS_*`` variable set.
So are the blocks of "## Protecting receivers", after the quick start's
catalog and token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PORT = 8765  # the receiver's port, as the README has it


def _blocks(heading: str) -> list[str]:
    """The ``sh`` blocks of the README section under ``## heading``."""
    section = README.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def quick_start() -> str:
    """The first ``sh`` block of the "Using it" section."""
    blocks = _blocks("Using it")
    assert blocks, "no sh block under '## Using it'"
    return str(blocks[0])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_free_port(deadline: float) -> None:
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", PORT)) != 0:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"port {PORT} is taken, and the README's receiver needs it")
        time.sleep(0.5)


def test_the_quick_start_block_is_runnable_text() -> None:
    block = quick_start()
    assert "<" not in block.replace("<<'EOF'", ""), "a placeholder cannot run as written"
    assert "asyncevents.toml" in block and "asyncevents worker" in block


@pytest.mark.slow
@pytest.mark.xdist_group("fixed-ports")  # its receiver listens on 8765
@pytest.mark.timeout(300)
def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.sh"
    script.write_text(quick_start(), encoding="utf-8")
    work = tmp_path / "fresh"
    work.mkdir()
    env = _env()
    _wait_for_free_port(time.monotonic() + 60)
    # Its own session, so the receiver it starts in the background goes whatever happens.
    shell = subprocess.Popen(["bash", "-e", "-o", "pipefail", str(script)], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert shell.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err and "error:" not in err, err
    # Two events to one subscription, and the replay of one of them, all verified.
    received = [line for line in out.splitlines() if line.startswith("receiver: sales.order.")]
    assert len(received) == 3, out
    assert all(line.endswith("signature valid, answered 200") for line in received), out
    assert sorted({line.split()[1] for line in received}) == ["sales.order.created",
                                                              "sales.order.shipped"]
    assert "delivered" in out and "subscription " in out
    assert sorted(p.name for p in work.iterdir()) == [
        "asyncevents-queue.db", "asyncevents.db", "asyncevents.key", "asyncevents.toml",
        "shipped.json"]


@pytest.mark.timeout(300)
def test_the_receiver_protection_commands_run_as_written(tmp_path: Path) -> None:
    quick = quick_start()
    # The quick start's set-up (catalog, token), without its receiver and worker.
    setup = quick[:quick.index("python -m asyncevents.receiver")]
    blocks = _blocks("Protecting receivers")
    assert len(blocks) >= 6, "the section's sh blocks went missing"
    script = tmp_path / "protection.sh"
    script.write_text(setup + "\n".join(blocks), encoding="utf-8")
    work = tmp_path / "fresh"
    work.mkdir()
    done = subprocess.run(["bash", "-e", "-o", "pipefail", str(script)], cwd=work, env=_env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr and "error:" not in done.stderr, done.stderr
    out = done.stdout
    assert "abc123" not in out  # a secret-looking header's value is never shown
    assert "the old one also signs until" in out  # the rotation's grace
    lines = out.splitlines()
    assert json.loads(next(line for line in lines if line.startswith("{")))["state"] == "closed"
    assert any(line.startswith("whpk_") for line in lines), out  # the Ed25519 public key
    assert "whsec_" not in out and "whsk_" not in out, "a secret was printed"
