"""Search errors over REST, the console and the CLI: a 422 naming ``q`` or ``cursor`` in one
line for values beyond the columns and for a search out of time; a database failure
without the database's URL; CSV cells that a spreadsheet would run escaped."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from asyncevents.api.app import create_app
from asyncevents.api.problems import STORE_UNAVAILABLE
from asyncevents.cli import main
from asyncevents.core.app import App
from asyncevents.core.search.results import csv_cell
from asyncevents.core.store import search as store_search
from asyncevents.errors import StoreError
from tests.api.conftest import Api
from tests.api.helpers import login

OUT_OF_RANGE = ["created:9999", "created:9999-12", "created:[0001 TO 9999]",
                "attempts:2147483648"]


def cursor(created: str) -> str:
    raw = json.dumps([1, created, "x"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def problem(response: Any, status: int, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("field") == field
    assert "\n" not in body["detail"]
    assert "://" not in response.text and "127.0.0.1" not in response.text
    detail: str = body["detail"]
    return detail


def test_values_beyond_the_columns_are_422_on_every_database(
        make_api: Callable[..., Api], database_url: str) -> None:
    api = make_api(database_url=database_url)
    api.delivery(api.subscription(), {"n": 1})
    h = api.auth("admin")
    for q in OUT_OF_RANGE:
        detail = problem(api.client.get("/v1/deliveries", params={"q": q}, headers=h), 422, "q")
        assert "out of range" in detail or "between -2147483648 and 2147483647" in detail
        problem(api.client.get("/v1/deliveries/export", params={"q": q}, headers=h), 422, "q")
        problem(api.client.post("/v1/deliveries/replay", json={"q": q}, headers=h), 422, "q")
    detail = problem(api.client.get("/v1/deliveries", headers=h, params={
        "cursor": cursor("0001-01-01T00:00:00+14:00")}), 422, "cursor")
    assert detail.startswith("invalid cursor")
    login(api)
    for q in OUT_OF_RANGE:
        page = api.client.get("/console/deliveries", params={"q": q})
        assert page.status_code == 422
        assert "out of range" in page.text or "2147483647" in page.text
        assert database_url.split("://")[1] not in page.text


def test_the_cli_refuses_values_beyond_the_columns_in_one_line(
        api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", api.app.settings.database_url)
    for q in OUT_OF_RANGE:
        assert main(["search", q]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("out of range" in err or "2147483647" in err)


@pytest.mark.timeout(60)
def test_a_search_out_of_time_is_a_422_on_q(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        api.delivery(api.subscription(), {"n": n})
    # Any query becomes one that would run for minutes; the store stops it after 0.2 s.
    slow = text("EXISTS (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                "WHERE x < 1000000000) SELECT max(x) FROM c)")
    monkeypatch.setattr("asyncevents.core.search.query.compile_where", lambda *a: slow)
    monkeypatch.setattr("asyncevents.api.console.pages.compile_where", lambda *a: slow)
    monkeypatch.setattr(store_search, "SEARCH_TIMEOUT", 0.2)
    h = api.auth("admin")
    for response in (api.client.get("/v1/deliveries", params={"q": "data.n:1"}, headers=h),
                     api.client.get("/v1/deliveries/export", params={"q": "*"}, headers=h),
                     api.client.post("/v1/deliveries/replay", json={"q": "*"}, headers=h)):
        assert problem(response, 422, "q").startswith("the search ran longer than 0.2 s")
    login(api)
    page = api.client.get("/console/deliveries", params={"q": "data.n:1"})
    assert page.status_code == 422 and "the search ran longer than 0.2 s" in page.text
    export = api.client.get("/console/deliveries.csv", params={"q": "*"})
    assert export.status_code == 422 and "the search ran longer than 0.2 s" in export.text


SECRET_URL = "postgresql+psycopg://ae:s3cret@db.internal:5432/prod"


def test_a_database_failure_shows_no_url(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError(f"database error at {SECRET_URL}: server closed the connection")

    api.delivery(api.subscription())
    login(api)
    for name in ("search_page", "count_matching", "get_delivery"):
        monkeypatch.setattr(api.app.store, name, down)
    responses = [
        api.client.get("/v1/deliveries", headers=api.auth("admin")),
        api.client.get("/v1/deliveries/some-uuid", headers=api.auth("admin")),
        api.client.get("/console/deliveries"),
        api.client.get("/console/deliveries/some-uuid"),
    ]
    for response in responses:
        assert STORE_UNAVAILABLE in response.text.replace("&#39;", "'"), response.text
        for leak in ("s3cret", "db.internal", "postgresql", "5432"):
            assert leak not in response.text
    assert responses[0].status_code == 503 and responses[1].status_code == 503


def test_an_unreachable_database_is_a_503_without_its_url(
        make_settings: Callable[..., Any]) -> None:
    app = App(make_settings(database_url="postgresql://ae:s3cret@127.0.0.1:1/nothing"))
    client = TestClient(create_app(app), raise_server_exceptions=False)
    response = client.get("/v1/subscriptions", headers={"Authorization": "Bearer ae_x"})
    assert response.status_code == 503
    assert response.json()["detail"] == STORE_UNAVAILABLE
    for leak in ("s3cret", "127.0.0.1", "postgresql", "nothing"):
        assert leak not in response.text


# -- CSV cells a spreadsheet would run -----------------------------------------------

FORMULAS = ["=1+2", "+1", "-1", "@SUM(A1)"]


@pytest.mark.parametrize(("value", "shown"), [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("a=1", "a=1"), ("", ""), (-3, "-3"), (None, ""),
    ({"x": "=1"}, '{"x":"=1"}'), (True, "true"),
])
def test_csv_cells_escape_formulas(value: Any, shown: str) -> None:
    assert csv_cell(value) == shown


def test_every_csv_export_escapes_formulas(api: Api, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    for name in [*FORMULAS, "shop.order.created"]:
        api.delivery(api.subscription(event=name), {"x": "=1"})
    wanted = {"'" + name for name in FORMULAS} | {"shop.order.created"}

    def names(text: str) -> set[str]:
        return {row["event_name"] for row in csv.DictReader(io.StringIO(text))}

    rest = api.client.get("/v1/deliveries/export", params={"format": "csv"},
                          headers=api.auth("admin"))
    assert names(rest.text) == wanted
    login(api)
    assert names(api.client.get("/console/deliveries.csv").text) == wanted
    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", api.app.settings.database_url)
    assert main(["search", "*", "--csv"]) == 0
    assert names(capsys.readouterr().out) == wanted
    # JSON keeps the values as they are.
    lines = api.client.get("/v1/deliveries/export", params={"format": "jsonl"},
                           headers=api.auth("admin")).text.splitlines()
    assert {json.loads(line)["event_name"] for line in lines} == {*FORMULAS, "shop.order.created"}


def test_a_filter_with_an_oversized_pattern_is_refused_at_subscribe(
        api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    evil = "customer.note:" + "*a" * 17
    response = api.client.post("/v1/subscriptions", headers=api.auth("admin"), json={
        "event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook",
        "verification_token": "x" * 16, "filter": evil})
    assert problem(response, 422, "filter") == (
        "customer.note at position 14: the wildcard pattern has 17 '*' wildcards, at most 16")
    accepted = api.client.post("/v1/subscriptions", headers=api.auth("admin"), json={
        "event_name": "shop.order.created", "recipient": "http://127.0.0.1:9/hook",
        "verification_token": "x" * 16, "filter": "customer.note:*a*a*a*a*a*b"})
    assert accepted.status_code == 201, accepted.text
    monkeypatch.setenv("ASYNCEVENTS_DATABASE_URL", api.app.settings.database_url)
    assert main(["subscribe", "shop.order.created", "http://127.0.0.1:9/hook",
                 "--token", "x" * 16, "--filter", evil]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "customer.note at position 14" in err
