"""Resolvers named by tests' event catalogs."""

from __future__ import annotations

from typing import Any

calls = {"flaky": 0}


def enrich(data: dict[str, Any]) -> dict[str, Any]:
    """Adds a field, as a real resolver would load an order."""
    return {**data, "enriched": True}


def always_fails(data: dict[str, Any]) -> dict[str, Any]:
    """A resolver whose backend is down."""
    raise ConnectionError("inventory service unreachable")
