"""The OpenAPI document, with the error answers the API really gives.

FastAPI documents validation errors with its own schema; this API answers
every error as a problem document instead, so each operation lists the
problems it can return (401/403 for secured ones, 404 where it takes an id,
422, 503) with the ``Problem`` schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["PROBLEM_SCHEMA", "install_openapi"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "The field at fault."},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_DESCRIPTIONS = {
    "400": "The body could not be parsed (not UTF-8 JSON).",
    "401": "No bearer token, or an unknown, expired or revoked one.",
    "403": "The token lacks the scope this operation needs.",
    "404": "No such object.",
    "409": "Conflict.",
    "413": "The request body is over the limit (refused before it is read).",
    "422": "A parameter or field is invalid; `field` names it.",
    "429": "Too many failed authentications from this address lately; see `Retry-After`.",
    "503": "The database or the broker cannot be reached.",
}


def _problem(code: str, description: str | None = None) -> dict[str, Any]:
    return {"description": description or _DESCRIPTIONS[code],
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _document(api: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=api.title, version=api.version, description=api.description,
                         routes=api.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = PROBLEM_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            codes = ["422", "503"]
            if operation.get("security"):
                codes += ["401", "403", "429"]
            if "{" in path:
                codes.append("404")
            if "requestBody" in operation:
                codes += ["400", "413"]
            for code in [*codes, "409"]:
                given = responses.get(code)
                if given is None and code == "409":
                    continue
                if given is not None and "content" in given and code != "422":
                    continue  # documented with its own model (e.g. /healthz's 503)
                described = (given or {}).get("description")
                if described == "Validation Error":  # FastAPI's default wording
                    described = None
                responses[code] = _problem(code, described)
    return schema


def install_openapi(api: FastAPI) -> None:
    """Serve the corrected document at ``/openapi.json`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = _document(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
