"""A publisher that keeps publishing through an outage, and what it was told."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from asyncevents.core.app import App
from asyncevents.errors import AsyncEventsError

__all__ = ["Publisher"]


@dataclass
class Publisher:
    """Publishes ``fault.<name>`` events in a thread, every ``pause`` seconds.

    ``accepted`` holds the ids ``publish()`` returned: each one must arrive.
    ``refused`` holds the errors it raised: those the caller knows about.
    """

    app: App
    name: str
    pause: float = 0.02
    accepted: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    """``time.monotonic()`` when each of ``accepted`` was confirmed, in the same order."""
    refused: list[str] = field(default_factory=list)
    slowest: float = 0.0
    """The longest a single ``publish()`` call took (seconds)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Publisher:
        """Start publishing in the background."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-publisher")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the publish in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.accepted.append(self.app.publish(f"fault.{self.name}", {"n": n}))
                self.accepted_at.append(time.monotonic())
            except AsyncEventsError as exc:
                self.refused.append(f"{type(exc).__name__}: {exc}")
            self.slowest = max(self.slowest, time.monotonic() - began)
            n += 1
            self._stop.wait(self.pause)
