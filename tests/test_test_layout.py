"""The suite's own layout: a test module imports fixtures and helpers, never another test module.

Importing a ``test_*`` module runs its module-level code a second time under
another name, drags its fixtures along, and ties together two files that the
tiers and ``pytest -k`` treat apart. What two test modules share lives in
``tests/helpers.py``, a ``helpers.py`` or ``conftest.py`` of their directory,
or a module of its own (``tests/search/strategies.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """Every module that ``source`` (the module named ``module``) imports, with its line;
    ``from x import y`` counts both ``x`` and ``x.y`` (``y`` may be a module)."""
    package = module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[:len(package) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and parts[-1].startswith("test_")


def test_no_module_of_the_suite_imports_a_test_module() -> None:
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        module = ".".join(path.relative_to(TESTS.parent).with_suffix("").parts)
        bad.extend(f"{path.relative_to(TESTS.parent)}:{line} imports {name}"
                   for line, name in imports(path.read_text(encoding="utf-8"), module)
                   if is_test_module(name))
    assert bad == [], ("move what is shared into tests/helpers.py, or a helpers.py or "
                       "conftest.py of the directory, and import it from there")


@pytest.mark.parametrize(("source", "caught"), [
    ("import tests.api.test_console", True),
    ("from tests.api.test_console import login", True),
    ("from tests.api import test_console", True),
    ("from .test_queries import x", True),
    ("from . import test_queries", True),
    ("from ..api.test_auth import y", True),
    ("def f():\n    from tests.test_schemas import run\n", True),
    ("from tests.helpers import run_cli", False),
    ("from tests.api.conftest import Api", False),
    ("from .conftest import wipe", False),
    ("from .strategies import QUERIES", False),
])
def test_the_check_sees_every_form_of_import(source: str, caught: bool) -> None:
    names = [name for _, name in imports(source, "tests.search.test_example")]
    assert any(is_test_module(n) for n in names) is caught, names
