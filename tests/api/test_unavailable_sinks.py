"""A shipped sink whose extra is not installed, over REST and in the console (issue 23, item 14).

``eventbridge`` without boto3 is not a failed plugin but an unavailable one:
``GET /v1/sinks`` lists it under ``unavailable`` with what to install, and the
console's sinks page shows it among the sinks as "needs asyncevents[aws]".
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from tests.api.conftest import Api
from tests.api.helpers import login


@pytest.fixture
def api_without_boto3(monkeypatch: pytest.MonkeyPatch,
                      make_api: Callable[..., Api]) -> Api:
    monkeypatch.setitem(sys.modules, "boto3", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "asyncevents.sinks.eventbridge", raising=False)
    api = make_api()
    api.app.plugins  # noqa: B018 - the entry points are loaded now, without boto3
    return api


def test_rest_lists_it_as_unavailable_not_failed(api_without_boto3: Api) -> None:
    api = api_without_boto3
    listed = api.client.get("/v1/sinks", headers=api.auth()).json()
    assert [m["plugin"] for m in listed["unavailable"]] == ["eventbridge"]
    assert listed["unavailable"][0]["needs"] == "asyncevents[aws]"
    assert listed["unavailable"][0]["missing"] == "boto3"
    assert all(f["plugin"] != "eventbridge" for f in listed["failed"])
    assert "eventbridge" not in {s["name"] for s in listed["sinks"]}


def test_the_console_shows_what_to_install(api_without_boto3: Api) -> None:
    api = api_without_boto3
    login(api)
    page = api.client.get("/console/sinks").text
    row = page[page.index('<tr class="unavailable">'):]
    row = row[:row.index("</tr>")]
    assert "eventbridge" in row and "needs asyncevents[aws]" in row
    assert "pip install 'asyncevents[aws]'" in row
    assert "Plugins that failed to load" not in page
