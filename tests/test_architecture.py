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


def _module_graph() -> dict[str, set[str]]:
    import grimp

    graph = grimp.build_graph("asyncevents", include_external_packages=False)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_module_imports_itself_through_others() -> None:
    # Type-only imports count: a circle of annotations is a circle of concepts.
    graph = _module_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert circles == []


def test_the_kernel_top_level_holds_only_its_face() -> None:
    # Families live in sub-packages named for what they do; the top level is the
    # kernel's shared types and entry (at most ten modules beside __init__).
    top = sorted(p.name for p in (SRC / "core").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 10, top


def test_plugins_in_the_repository_import_only_the_public_api() -> None:
    # A plugin's own code imports what a third-party plugin could: the package's
    # public names, asyncevents.testing, and the extension points' modules.
    import ast

    allowed = {"asyncevents", "asyncevents.testing", "asyncevents.errors",
               "asyncevents.sinks.addresses", "asyncevents.sinks.pinning"}
    offenders = []
    for path in sorted((SRC.parent.parent / "plugins").glob("*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module == "asyncevents" or module.startswith("asyncevents."):
                if module not in allowed:
                    offenders.append(f"{path.name}: {node.module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: {a.name}" for a in node.names
                              if a.name.startswith("asyncevents.") and a.name not in allowed]
    assert offenders == []
