"""CLI and worker processes running with a test's settings.

(The kill -9 scenario itself lives in :mod:`faults.kill`; ``make faults`` runs it
on every transport and ``tests/test_faults.py`` runs its short form in ``make test``.)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from asyncevents.core.settings import Settings
from faults.stack import Stack


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
