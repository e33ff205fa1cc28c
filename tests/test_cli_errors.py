"""Bad input: each mistake is a one-line error on stderr, a non-zero exit, nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_cli, sqlite_rows


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(
        'allowed_networks = ["127.0.0.0/8"]\n'
        '[events."sales.order.created"]\ndescription = "placed"\n'
    )
    return tmp_path


def _rows(workdir: Path, table: str) -> int:
    return sqlite_rows(workdir / "asyncevents.db", table)


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        # an event the catalog does not know, with the known ones listed
        (["publish", "sales.order.deleted", "--data", "{}"],
         ["unknown event", "sales.order.created"]),
        (["publish", "sales.order.created", "--data", "{not json"], ["--data", "not valid JSON"]),
        (["publish", "sales.order.created", "--data", "[1, 2]"], ["--data", "JSON object"]),
        (["subscribe", "sales.order.created", "http://127.0.0.1:9/x", "--sink", "nope",
          "--token", "t"], ["unknown sink 'nope'", "http"]),
        (["subscribe", "sales.order.created", "not-a-url", "--token", "t"], ["http://"]),
        (["subscribe", "sales.order.created", "ftp://127.0.0.1/x", "--token", "t"], ["ftp"]),
        (["subscribe", "sales.order.nope", "http://127.0.0.1:9/x", "--token", "t"],
         ["unknown event"]),
        (["subscriptions", "show", "no-such-id"], ["no subscription"]),
        # a whsec_ token must be base64, or every signature would be wrong
        (["subscribe", "sales.order.created", "http://127.0.0.1:9/x", "--token", "whsec_!!"],
         ["--token", "base64"]),
        (["trace", "no-such-uuid"], ["no delivery"]),
    ],
)
def test_bad_input(workdir: Path, args: list[str], needles: list[str]) -> None:
    result = run_cli(*args, cwd=workdir)
    _one_line_error(result, *needles)
    assert _rows(workdir, "asyncevents_subscription") == 0
    assert _rows(workdir, "asyncevents_delivery") == 0


def test_unreachable_database(workdir: Path) -> None:
    result = run_cli("subscriptions", "list", cwd=workdir,
                     env={"ASYNCEVENTS_DATABASE_URL": "postgresql://x:hunter2@127.0.0.1:1/db"})
    _one_line_error(result, "127.0.0.1:1")
    assert "hunter2" not in result.stderr


def test_unreachable_broker(workdir: Path) -> None:
    result = run_cli("publish", "sales.order.created", "--data", "{}", cwd=workdir,
                     env={"ASYNCEVENTS_TRANSPORT_URL": "amqp://guest:hunter2@127.0.0.1:1//"})
    _one_line_error(result, "broker", "127.0.0.1:1")
    assert "hunter2" not in result.stderr


def test_bad_setting(workdir: Path) -> None:
    result = run_cli("events", cwd=workdir, env={"ASYNCEVENTS_MAX_DEATHS": "lots"})
    _one_line_error(result, "max_deaths")


def test_unknown_transport(workdir: Path) -> None:
    result = run_cli("publish", "sales.order.created", cwd=workdir,
                     env={"ASYNCEVENTS_TRANSPORT_URL": "carrier-pigeon://coop"})
    _one_line_error(result, "unsupported transport")
