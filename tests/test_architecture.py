"""docs/architecture.md names real functions, each in the file it says."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
SRC = ROOT / "src" / "asyncevents"
NAMED = sorted(set(re.findall(r"`([a-z_/]+\.py):([A-Za-z_][\w.]*)`", DOC)))


def test_the_page_names_the_whole_path() -> None:
    files = {path for path, _ in NAMED}
    # publish, the transports, the worker, dispatch, deliver, the store, a sink, retries
    assert {"core/publishing/publish.py", "core/transport/amqp.py",
            "core/transport/sql/transport.py", "core/worker/worker.py",
            "core/delivery/dispatch.py", "core/delivery/deliver.py",
            "core/store/deliveries.py", "sinks/http.py", "core/retry/schedules.py"} <= files
    assert len(NAMED) >= 40


@pytest.mark.parametrize(("path", "name"), NAMED, ids=[f"{p}:{n}" for p, n in NAMED])
def test_each_named_function_exists_where_the_page_says(path: str, name: str) -> None:
    module = importlib.import_module("asyncevents." + path[:-3].replace("/", "."))
    target: object = module
    for part in name.split("."):
        target = getattr(target, part)
    defined_in = Path(inspect.getsourcefile(target) or "")  # type: ignore[arg-type]
    assert defined_in == SRC / path, f"{name} is defined in {defined_in}"
