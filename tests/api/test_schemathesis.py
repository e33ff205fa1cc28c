"""Property-based requests from the API's own OpenAPI document: no 5xx, documented answers.

The schema is read once from an app that is never called (building the
document touches no database); each test then sends its generated requests
to a fresh app with its own store, authenticated as admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from asyncevents.api.app import create_app
from asyncevents.core.app import App
from asyncevents.core.settings import Settings
from tests.api.conftest import Api
from tests.helpers import inline_plugins

pytestmark = pytest.mark.slow

_DOC_ONLY = App(Settings(database_url="sqlite://", transport_url="memory://"),
                plugins=inline_plugins())
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_DOC_ONLY))


@pytest.fixture
def target(make_api: Callable[..., Api], database_url: str) -> Api:
    """The app under test on each database, with a subscription and a delivery to find."""
    api = make_api(database_url=database_url)
    api.delivery(api.subscription())
    return api


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case: Any, target: Api) -> None:
    response = case.call(app=target.client.app,
                         headers={**(case.headers or {}), **target.auth("admin")})
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
