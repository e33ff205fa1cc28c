"""What this process tells the collector about itself: the OpenTelemetry resource."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from opentelemetry.sdk.resources import Resource

__all__ = ["resource", "version"]


def resource() -> Resource:
    """``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``, else ``service.name=asyncevents``."""
    found = Resource.create()
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        return found.merge(Resource({"service.name": "asyncevents"}))
    return found


def version() -> str:
    """The installed asyncevents version (the instrumentation scope's)."""
    try:
        return _distribution_version("asyncevents")
    except PackageNotFoundError:
        return "0"
