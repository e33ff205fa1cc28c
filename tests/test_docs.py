"""Every hook is documented in CONTRIBUTING.md with its signature."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from asyncevents.core import hookspecs

DOC = (Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()
SPECS = [
    (name, func) for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(func, "asyncevents_spec")
]


def test_there_are_hooks() -> None:
    assert {name for name, _ in SPECS} >= {"register_sinks", "retry_management"}


@pytest.mark.parametrize(("name", "func"), SPECS, ids=[name for name, _ in SPECS])
def test_hook_is_documented_with_its_signature(name: str, func: object) -> None:
    params = ", ".join(inspect.signature(func).parameters)  # type: ignore[arg-type]
    assert f"`{name}({params})`" in DOC
