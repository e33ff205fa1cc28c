"""Event schemas and deprecation: refused data on CLI, Python and REST, nothing queued."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from asyncevents.core.app import App
from asyncevents.core.events.catalog import Catalog
from asyncevents.core.settings import EventDefinition, load_settings, unknown_keys
from asyncevents.errors import ConfigError, InvalidPayload
from tests.api.conftest import Api, make_api  # noqa: F401 - the REST tests' fixture
from tests.helpers import run_cli, run_readme_block, sqlite_rows

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "total"],
    "properties": {
        "id": {"type": "integer"},
        "total": {"type": "number", "minimum": 0},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
}
ORDER_EVENTS: dict[str, Any] = {
    "sales.order.created": {"description": "placed", "schema": ORDER_SCHEMA},
    "customer.*": {"description": "customers", "schema": {"required": ["email"]}},
    "customer.deleted": {"description": "no schema of its own"},
    "sales.order.legacy": {"description": "use sales.order.created", "deprecated": True},
}


def ready(app: App) -> int:
    """Messages waiting on this installation's queues (the trigger queue, mostly)."""
    return sum(app.transport.queue_sizes().values())


# --- the error line ----------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": 1, "total": -1},
         "sales.order.created: data.total: -1 is less than the minimum of 0"),
        ({"id": 1}, "sales.order.created: data: 'total' is a required property"),
        ({"id": "one", "total": 1},
         "sales.order.created: data.id: 'one' is not of type 'integer'"),
        # an array index in the path
        ({"id": 1, "total": 1, "items": [{"sku": "A"}, {}]},
         "sales.order.created: data.items[1]: 'sku' is a required property"),
    ],
)
def test_error_names_event_path_and_rule(data: dict[str, Any], message: str) -> None:
    catalog = Catalog.build({}, ORDER_EVENTS.items(), strict=True)
    with pytest.raises(InvalidPayload) as caught:
        catalog.check_data("sales.order.created", data)
    assert str(caught.value) == message


def test_long_values_are_cut_to_one_short_line() -> None:
    catalog = Catalog.build({}, [("e", {"schema": {"properties": {"a": {"type": "integer"}}}})],
                            strict=True)
    with pytest.raises(InvalidPayload) as caught:
        catalog.check_data("e", {"a": "x" * 5000 + "\nsecond line"})
    text = str(caught.value)
    assert "\n" not in text and len(text) < 200 and text.startswith("e: data.a: ")


def test_a_pattern_schema_covers_matching_names_unless_they_have_their_own() -> None:
    catalog = Catalog.build({}, ORDER_EVENTS.items(), strict=True)
    with pytest.raises(InvalidPayload, match=r"^customer.created: data: 'email' is a required"):
        catalog.check_data("customer.created", {})
    catalog.check_data("customer.created", {"email": "a@example.com"})
    catalog.check_data("customer.deleted", {})  # its own definition, without a schema


# --- Python ------------------------------------------------------------------

def test_python_publish_refuses_and_queues_nothing(transport_settings: Any) -> None:
    app = App(transport_settings.model_copy(update={"events": {
        k: EventDefinition(**v) for k, v in ORDER_EVENTS.items()}, "strict_events": True}))
    app.transport.check()  # the queues exist: a count of 0 is a real 0
    with pytest.raises(InvalidPayload, match=r"data\.total: -1 is less than the minimum of 0"):
        app.publish("sales.order.created", {"id": 1, "total": -1})
    with pytest.raises(InvalidPayload, match=r"data\.total"):
        app.publish("sales.order.created", {"id": 1, "total": -1}, delay=30)
    with pytest.raises(InvalidPayload, match=r"^sales.order.created: data: 'id' is a required"):
        app.publish_many([("sales.order.created", {"id": 1, "total": 5}),
                          ("sales.order.created", {"total": 5})])
    assert ready(app) == 0
    assert app.store.recent_deliveries() == []
    # what matches goes through
    app.publish_many([("sales.order.created", {"id": 1, "total": 5}),
                      ("sales.order.created", {"id": 2, "total": 0})])
    app.publish("sales.order.created", {"id": 3, "total": 1.5})
    assert ready(app) == 3
    app.close()


def test_schema_file_is_relative_to_the_toml_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf"
    (config / "schemas").mkdir(parents=True)
    (config / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    (config / "asyncevents.toml").write_text(
        '[events."sales.order.created"]\nschema_file = "schemas/order.json"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("ASYNCEVENTS_CONFIG", str(config / "asyncevents.toml"))
    settings = load_settings()
    catalog = Catalog.build(settings.events, [], strict=True)
    assert catalog.schemas["sales.order.created"].schema == ORDER_SCHEMA
    with pytest.raises(InvalidPayload, match=r"data\.total"):
        catalog.check_data("sales.order.created", {"id": 1, "total": -1})


def test_schema_keys_are_known_to_the_config_check() -> None:
    document = {"events": {"e": {"schema": {}, "deprecated": True, "description": ""},
                           "f": {"schema_file": "f.json", "shema": {}}}}
    assert unknown_keys(document, "asyncevents.toml") == [
        "asyncevents.toml: unknown key 'shema' in [events.'f'] is ignored "
        "(did you mean 'schema'?)"]


# --- bad schemas stop start-up ----------------------------------------------

@pytest.mark.parametrize(
    ("definition", "file_text", "needles"),
    [
        ({"schema": {"type": "nope"}}, None, ["event 'e'", "not a valid JSON Schema"]),
        ({"schema": {"minimum": "zero"}}, None, ["event 'e'", "not a valid JSON Schema"]),
        ({"schema_file": "missing.json"}, None, ["event 'e'", "missing.json", "does not exist"]),
        ({"schema_file": "bad.json"}, "{not json", ["event 'e'", "bad.json", "is not JSON"]),
        ({"schema_file": "bad.json"}, '{"type": 5}', ["event 'e'", "bad.json",
                                                       "not a valid JSON Schema"]),
        ({"schema_file": "bad.json"}, "[1, 2]", ["event 'e'", "bad.json", "JSON object"]),
        # nothing is fetched while publishing
        ({"schema": {"$ref": "https://example.com/order.json"}}, None,
         ["event 'e'", "points outside the schema"]),
        ({"schema": {"$ref": "#/$defs/order"}}, None, ["event 'e'", "points to nothing"]),
        ({"schema": {}, "schema_file": "x.json"}, None, ["event 'e'", "not both"]),
    ],
)
def test_bad_schema_is_a_config_error(tmp_path: Path, definition: dict[str, Any],
                                      file_text: str | None, needles: list[str]) -> None:
    if file_text is not None:
        (tmp_path / "bad.json").write_text(file_text)
    with pytest.raises(ConfigError) as caught:
        Catalog.build({}, [("e", definition)], strict=True)
    for needle in needles:
        assert needle in str(caught.value), str(caught.value)


def test_unreadable_schema_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError, match=r"event 'e': cannot read schema file .*dir.json"):
        Catalog.build({}, [("e", {"schema_file": str(tmp_path / "dir.json")})], strict=True)


def test_local_refs_work() -> None:
    schema = {"$defs": {"money": {"type": "number", "minimum": 0}},
              "properties": {"total": {"$ref": "#/$defs/money"}}}
    catalog = Catalog.build({}, [("e", {"schema": schema})], strict=True)
    catalog.check_data("e", {"total": 3})
    with pytest.raises(InvalidPayload, match=r"^e: data\.total: -3 is less than the minimum"):
        catalog.check_data("e", {"total": -3})


# --- CLI ---------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.json").write_text(json.dumps(ORDER_SCHEMA))
    (tmp_path / "asyncevents.toml").write_text(
        '[events."sales.order.created"]\ndescription = "placed"\n'
        'schema_file = "schemas/order.json"\n'
        '[events."sales.order.legacy"]\ndescription = "old"\ndeprecated = true\n'
        '[events."customer.*"]\nschema = { required = ["email"] }\n')
    return tmp_path


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_publish_refuses_and_queues_nothing(workdir: Path) -> None:
    result = run_cli("publish", "sales.order.created", "--data", '{"id": 1, "total": -1}',
                     cwd=workdir)
    line = _one_line_error(result)
    assert line == "error: sales.order.created: data.total: -1 is less than the minimum of 0"
    assert sqlite_rows(workdir / "asyncevents-queue.db", "asyncevents_queue_message") == 0
    assert sqlite_rows(workdir / "asyncevents.db", "asyncevents_delivery") == 0
    ok = run_cli("publish", "sales.order.created", "--data", '{"id": 1, "total": 9}',
                 cwd=workdir)
    assert ok.returncode == 0, ok.stderr
    assert sqlite_rows(workdir / "asyncevents-queue.db", "asyncevents_queue_message") == 1


def test_cli_bad_schema_file_stops_every_command(workdir: Path) -> None:
    (workdir / "schemas" / "order.json").write_text("{oops")
    for args in (["events"], ["publish", "sales.order.created", "--data", "{}"],
                 ["worker", "--max-idle-time", "0"]):
        _one_line_error(run_cli(*args, cwd=workdir), "event 'sales.order.created'",
                        "order.json", "is not JSON")


def test_cli_events_lists_schema_and_deprecation(workdir: Path) -> None:
    listed = json.loads(run_cli("events", "--json", cwd=workdir).stdout)
    by_name = {row["name"]: row for row in listed}
    assert by_name["sales.order.legacy"]["deprecated"] is True
    assert by_name["sales.order.created"]["deprecated"] is False
    assert by_name["sales.order.created"]["schema"] == ORDER_SCHEMA
    assert by_name["sales.order.created"]["schema_file"] == str(workdir / "schemas/order.json")
    assert by_name["customer.*"]["schema"] == {"required": ["email"]}
    table = run_cli("events", cwd=workdir).stdout
    legacy = next(line for line in table.splitlines() if "sales.order.legacy" in line)
    assert "deprecated" in legacy
    created = next(line for line in table.splitlines() if "sales.order.created" in line)
    assert "order.json" in table and "deprecated" not in created


def test_cli_publish_of_a_deprecated_event_warns(workdir: Path) -> None:
    result = run_cli("publish", "sales.order.legacy", "--data", "{}", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "deprecated event published" in result.stderr
    assert "sales.order.legacy" in result.stderr


# --- deprecation in Python ---------------------------------------------------

def test_deprecated_event_warns_once_per_name(make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(strict_events=True, events={
        "old.*": EventDefinition(deprecated=True), "new.one": EventDefinition()}))
    with capture_logs() as logs:
        app.publish("old.thing", {})
        app.publish("old.thing", {})
        app.publish_many([("old.other", {}), ("new.one", {})])
    warnings = [(e["event_name"], e["log_level"]) for e in logs
                if e["event"] == "deprecated event published"]
    assert warnings == [("old.thing", "warning"), ("old.other", "warning")]
    assert ready(app) == 4  # deprecated still publishes
    app.close()


# --- REST ----------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_rest_publish_refuses_with_a_problem(make_api: Callable[..., Api],  # noqa: F811
                                             store: str,
                                             request: pytest.FixtureRequest) -> None:
    overrides: dict[str, Any] = {"strict_events": True, "events": ORDER_EVENTS}
    if store == "postgresql":
        url = request.getfixturevalue("pg_url")
        overrides.update(database_url=url, transport_url=f"sqla+{url}")
    api = make_api(**overrides)
    api.app.transport.check()
    response = api.client.post("/v1/events", headers=api.auth("events:publish"), json={
        "name": "sales.order.created", "data": {"id": 1, "total": -1}})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["detail"] == "sales.order.created: data.total: -1 is less than the minimum of 0"
    assert problem["field"] == "data"
    # an idempotent publish that fails keeps nothing either
    response = api.client.post("/v1/events", json={"name": "sales.order.created", "data": {}},
                               headers={**api.auth("events:publish"), "Idempotency-Key": "k1"})
    assert response.status_code == 422
    assert ready(api.app) == 0
    assert api.app.store.recent_deliveries() == []
    # the refused publish kept no key: the same key with good data publishes
    good = api.client.post("/v1/events", json={"name": "sales.order.created",
                                               "data": {"id": 1, "total": 1}},
                           headers={**api.auth("events:publish"), "Idempotency-Key": "k1"})
    assert good.status_code == 202
    assert ready(api.app) == 1


def test_rest_catalog_shows_schema_and_deprecation(
        make_api: Callable[..., Api]) -> None:  # noqa: F811
    api = make_api(strict_events=True, events=ORDER_EVENTS)
    body = api.client.get("/v1/events", headers=api.auth("subscriptions:read")).json()
    by_name = {event["name"]: event for event in body["events"]}
    assert by_name["sales.order.legacy"]["deprecated"] is True
    assert by_name["sales.order.created"]["deprecated"] is False
    assert by_name["sales.order.created"]["schema"] == ORDER_SCHEMA
    assert by_name["sales.order.legacy"]["schema"] is None


# --- the README's example -----------------------------------------------------

def test_readme_schema_example_runs_as_written(tmp_path: Path) -> None:
    result = run_readme_block("### Event schemas", tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("error: sales.order.created: data.total: -1 is less than the minimum of 0"
            in result.stderr)
    assert "deprecated event published" in result.stderr
    assert result.stdout.startswith("refused\n")
    # two events published, the refused one not
    assert sqlite_rows(tmp_path / "asyncevents-queue.db", "asyncevents_queue_message") == 2
