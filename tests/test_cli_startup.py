"""``asyncevents --help`` and ``--version`` import nothing heavy (issue 23, item 14).

No wall-clock assertion (timed tests are not kept here): what is checked is
the cause of a slow start, the modules imported. Neither the store
(SQLAlchemy, Alembic), the transports (kombu), the REST API (FastAPI,
uvicorn) nor any plugin (an entry point, pluggy) is imported to print the
help or the version; the command that needs them imports them when it runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from asyncevents.cli import cli
from asyncevents.cli.lazy import LazyGroup

HEAVY = ("sqlalchemy", "alembic", "kombu", "fastapi", "starlette", "uvicorn", "pluggy",
         "boto3", "aiohttp", "httpx", "luqum", "pydantic")
# Any of these imported means the App was built or the plugins loaded.
OURS = ("asyncevents.core.app", "asyncevents.core.plugins", "asyncevents.core.store",
        "asyncevents.core.transport", "asyncevents.sinks", "asyncevents.api",
        "asyncevents.features")

_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["asyncevents", *sys.argv[1:]]
from asyncevents.cli import main
main()
"""


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI's entry point with ``args``; its result and the modules it imported."""
    result = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                            text=True, timeout=60)
    _, _, modules = result.stderr.rpartition("MODULES ")
    return result, set(json.loads(modules))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if m.split(".")[0] in HEAVY or any(m == o or m.startswith(o + ".")
                                                     for o in OURS))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_nothing_heavy(args: list[str]) -> None:
    result, modules = _imported(*args)
    assert result.returncode == 0, result.stderr
    assert _heavy(modules) == [], f"`asyncevents {' '.join(args)}` imported these"
    if args == ["--version"]:
        assert result.stdout.startswith("asyncevents, version ")
    else:
        # Every command is listed, with its help, none of them imported.
        assert "Commands:" in result.stdout
        for name in ("subscribe", "search", "serve", "sinks", "worker", "tokens", "stats"):
            assert f"  {name} " in result.stdout, name


def test_a_command_imports_what_it_needs_when_it_runs() -> None:
    # The lazy listing is not a dead end: the command is there, and works.
    result, modules = _imported("subscriptions", "--help")
    assert result.returncode == 0, result.stderr
    assert "asyncevents.cli.subscriptions" in modules
    assert "Usage: asyncevents subscriptions" in result.stdout


def test_the_listed_help_of_each_lazy_command_is_its_own() -> None:
    # The listing shows the declared help without importing: it must be the command's.
    assert isinstance(cli, LazyGroup) and cli.lazy
    ctx = click.Context(cli, info_name="asyncevents")
    for name in cli.lazy:
        stand_in = click.Command(name, help=cli.lazy[name][1])
        real = cli.get_command(ctx, name)
        assert real is not None and real.name == name
        for limit in (45, 80, 1000):
            assert stand_in.get_short_help_str(limit) == real.get_short_help_str(limit), (
                f"the help declared for `{name}` in cli/commands.py differs from its docstring")


def test_every_command_module_is_reachable() -> None:
    ctx = click.Context(cli, info_name="asyncevents")
    names = cli.list_commands(ctx)
    assert {"rotate-key", "stop-workers", "subscribe", "subscriptions", "migrate"} <= set(names)
    for name in names:
        assert isinstance(cli.get_command(ctx, name), click.Command), name
