"""A first run that works as written: payloads from files and stdin, a configuration
file that says what is wrong with it, output a user can type back, one log format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli

CONFIG = ('strict_events = false\nallowed_networks = ["127.0.0.0/8"]\n'
          'transport_url = "sqla+sqlite:///queue.db"\n')


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "asyncevents.toml").write_text(CONFIG)
    return tmp_path


def _cli_with_stdin(workdir: Path, stdin: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCEVENTS_")}
    result = subprocess.run([sys.executable, "-m", "asyncevents", *args], cwd=workdir, env=env,
                            input=stdin, capture_output=True, timeout=60)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(), result.stderr.decode())


def test_publish_reads_data_from_a_file_and_from_stdin(workdir: Path) -> None:
    big = {"items": [{"sku": f"SKU-{n}", "note": "é" * 50} for n in range(3000)]}  # ~500 kB
    (workdir / "order.json").write_text("\ufeff" + json.dumps(big), encoding="utf-8")
    from_file = run_cli("publish", "sales.order.created", "--data", "@order.json", "--json",
                        cwd=workdir)
    assert from_file.returncode == 0, from_file.stderr
    assert len(json.loads(from_file.stdout)["event_id"]) == 36
    for dash in ("-", "@-"):
        from_stdin = _cli_with_stdin(workdir, b'{"id": 42}', "publish", "sales.order.created",
                                     "--data", dash)
        assert from_stdin.returncode == 0, from_stdin.stderr
        assert len(from_stdin.stdout.strip()) == 36


@pytest.mark.parametrize(("data", "stdin", "needles"), [
    ("@missing.json", b"", ["--data", "cannot read missing.json", "No such file"]),
    ("@latin1.json", b"", ["--data", "latin1.json is not UTF-8"]),
    ("-", b"[1, 2]", ["--data", "JSON object"]),
    ("-", b"", ["--data", "not valid JSON"]),
])
def test_publish_data_errors_name_the_option_and_the_file(
        workdir: Path, data: str, stdin: bytes, needles: list[str]) -> None:
    (workdir / "latin1.json").write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    result = _cli_with_stdin(workdir, stdin, "publish", "sales.order.created", "--data", data)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


def test_unknown_keys_of_the_config_file_are_warned_about(workdir: Path) -> None:
    (workdir / "asyncevents.toml").write_text(
        CONFIG + "max_death = 3\nASYNCEVENTS_JITTER = 0.5\nfavourite_colour = 'blue'\n"
        '[events."sales.order.created"]\ndescription = "placed"\nresolvr = "x:y"\n'
        "[events.customer.created]\ndescription = 'not quoted'\n")
    result = run_cli("events", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert {e["name"] for e in json.loads(result.stdout)
            if not e["name"].startswith("asyncevents.")} == {"sales.order.created",
                                                               "customer"}
    assert _lines(result.stderr) == [
        "warning: asyncevents.toml: unknown key 'max_death' is ignored "
        "(did you mean 'max_deaths'?)",
        "warning: asyncevents.toml: unknown key 'ASYNCEVENTS_JITTER' is ignored (in the file, "
        "write it without the prefix, in lower case: 'jitter')",
        "warning: asyncevents.toml: unknown key 'favourite_colour' is ignored",
        "warning: asyncevents.toml: unknown key 'resolvr' in [events.'sales.order.created'] "
        "is ignored (did you mean 'resolver'?)",
        "warning: asyncevents.toml: unknown key 'created' in [events.'customer'] is ignored "
        '(quote a dotted event name: [events."customer.created..."])',
    ]


def test_a_known_config_file_warns_about_nothing(workdir: Path) -> None:
    result = run_cli("events", cwd=workdir)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_toml_syntax_error_names_the_file_and_the_line(workdir: Path) -> None:
    (workdir / "other.toml").write_text(CONFIG + "max_deaths 3\n")
    result = run_cli("events", cwd=workdir,
                     env={"ASYNCEVENTS_CONFIG": str(workdir / "other.toml")})
    assert result.returncode == 1
    (line,) = _lines(result.stderr)
    assert line.startswith(f"error: configuration file {workdir / 'other.toml'} is not valid "
                           "TOML: ")
    assert "line 4" in line, line


def test_an_unimportable_resolver_stops_worker_and_serve_at_start_up(workdir: Path) -> None:
    (workdir / "asyncevents.toml").write_text(
        CONFIG + '[events."sales.order.created"]\nresolver = "myshop.nowhere:order_payload"\n')
    for command in (["worker", "--max-idle-time", "5"], ["serve", "--port", "1"]):
        result = run_cli(*command, cwd=workdir)
        assert result.returncode == 1, result.stderr
        assert _lines(result.stderr) == [
            "error: event 'sales.order.created': cannot load resolver "
            "'myshop.nowhere:order_payload': No module named 'myshop'"]
    # Publishing needs no resolver: the event waits for a worker that can load it.
    assert run_cli("publish", "sales.order.created", cwd=workdir).returncode == 0


def test_subscriptions_show_and_list_print_what_a_user_types_back(workdir: Path) -> None:
    made = run_cli("subscribe", "a.b", "http://127.0.0.1:9/x", "--token", "t",
                   "--retry-policy", '{"max_deaths": 2}', "--metadata", '{"team": "shop"}',
                   "--json", cwd=workdir)
    assert made.returncode == 0, made.stderr
    sub_id = json.loads(made.stdout)["id"]
    shown = run_cli("subscriptions", "show", sub_id, cwd=workdir).stdout
    fields = dict(line.strip().split(": ", 1) for line in _lines(shown))
    assert fields["retry_policy"] == '{"max_deaths": 2}'
    assert fields["metadata"] == '{"team": "shop"}'
    assert (fields["filter"], fields["active"], fields["event_name"]) == ("null", "true", "a.b")
    assert "None" not in shown and "True" not in shown and "'" not in shown
    listed = run_cli("subscriptions", "list", cwd=workdir).stdout
    assert " true " in listed and "True" not in listed


def test_tables_and_csv_write_true_false_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    from asyncevents.api.services.deliveries import export_lines
    from asyncevents.cli.output import print_csv
    from asyncevents.core.clock import utcnow
    from asyncevents.core.models import Delivery

    print_csv([{"uuid": "u", "success": False, "data": {"a": [1, None]}, "status": None}],
              ("uuid", "success", "data", "status"))
    assert capsys.readouterr().out.splitlines() == [
        "uuid,success,data,status", 'u,false,"{""a"":[1,null]}",']
    now = utcnow()
    delivery = Delivery(id="d", event_id="e", event_name="a.b", subscription_id="s",
                        sink="http", recipient="http://h", status="dead", attempts=2,
                        payload={"ok": True}, published_at=now, created_at=now, updated_at=now,
                        next_attempt_at=None)
    _header, row = "".join(export_lines(iter([delivery]), "csv")).splitlines()
    assert ",false,2," in row and '"{""ok"":true}"' in row, row  # the API's export too


def test_demo_logs_in_the_worker_format(tmp_path: Path) -> None:
    result = run_cli("demo", "--events", "1", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    logs = [line for line in _lines(result.stderr) if "[info" in line]
    assert any("worker started" in line for line in logs), result.stderr
    for line in logs:
        # configure_logging's lines: ISO time in UTC, the level, no "key=None" noise.
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[info\s*\] ", line), line
        assert "=None" not in line
    assert "[info" not in result.stdout  # logs on stderr, as the worker's; results on stdout
