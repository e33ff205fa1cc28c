"""A worker killed with SIGKILL mid-stream, several times: count what arrived.

The scenario lives in :mod:`faults.kill` (``make faults`` runs it on every
transport); this wraps it for tests that bring their own settings.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from asyncevents.core.settings import Settings
from faults.kill import kill_scenario
from faults.receiver import Receiver
from faults.stack import Stack


@dataclass
class Figures:
    """What a kill run published, delivered, duplicated and lost."""

    published: int
    delivered: int
    duplicated: int
    lost: int
    kills: int
    unidentifiable: int = 0

    def line(self, label: str) -> str:
        return (f"{label}: published={self.published} delivered={self.delivered} "
                f"duplicated={self.duplicated} lost={self.lost} kills={self.kills}")


def run_kill_scenario(settings: Settings, events: int = 150, kills: int = 3,
                      timeout: float = 180) -> Figures:
    """Publish ``events``, SIGKILL the worker ``kills`` times mid-stream, then drain."""
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="killrun-") as directory:
        transport = settings.transport_url.split(":", 1)[0]
        stack = Stack(transport, settings, Path(directory))
        try:
            got = kill_scenario(stack, receiver, events=events, kills=kills, timeout=timeout)
        finally:
            stack.close()
            receiver.close()
    return Figures(got.published, got.delivered, got.duplicated, got.lost, got.kills,
                   got.unidentifiable)


def _env(settings: Settings) -> dict[str, str]:
    """The environment of a CLI or worker process running with ``settings``."""
    stack = Stack(settings.transport_url.split(":", 1)[0], settings, Path(tempfile.gettempdir()))
    env = stack.env()
    env["ASYNCEVENTS_LOG_LEVEL"] = "WARNING"
    return env


def _worker(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    """A silent ``asyncevents worker --concurrency 4`` process."""
    return subprocess.Popen(
        [sys.executable, "-m", "asyncevents", "worker", "--concurrency", "4", *extra],
        env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
