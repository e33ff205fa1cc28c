from __future__ import annotations

import pytest

from asyncevents.core.events.catalog import Catalog, load_resolver
from asyncevents.core.events.patterns import matches
from asyncevents.core.settings import EventDefinition
from asyncevents.errors import ConfigError, UnknownEvent


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("sales.order.created", "sales.order.created", True),
        ("sales.order.created", "sales.order.created2", False),
        ("sales.order.*", "sales.order.created", True),
        ("sales.order.*", "sales.order", False),  # the dot before * is literal
        ("sales.*", "sales.order.created", True),  # * spans dots, as in Magento
        ("*", "anything.at.all", True),
        ("*.created", "customer.created", True),
        ("sales.*.created", "sales.invoice.created", True),
        ("sales.+", "sales.x", False),  # regex characters are literal
    ],
)
def test_patterns(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def _catalog(strict: bool = True) -> Catalog:
    return Catalog.build(
        {"sales.order.created": EventDefinition(description="placed"),
         "customer.*": EventDefinition()},
        [("code.event", {"description": "from a hook"})],
        strict=strict,
    )


def test_strict_publish_lists_known_events() -> None:
    with pytest.raises(UnknownEvent) as err:
        _catalog().check_publish("sales.order.deleted")
    message = str(err.value)
    assert "sales.order.deleted" in message
    assert "sales.order.created" in message and "code.event" in message
    assert "\n" not in message


def test_patterns_in_catalog_cover_names() -> None:
    catalog = _catalog()
    catalog.check_publish("customer.created")
    catalog.check_publish("code.event")
    catalog.check_subscribe("sales.order.*")  # covers a known event
    catalog.check_subscribe("*")
    with pytest.raises(UnknownEvent):
        catalog.check_subscribe("invoice.*")


def test_not_strict_accepts_anything_but_wildcard_publish() -> None:
    catalog = _catalog(strict=False)
    catalog.check_publish("whatever.happened")
    with pytest.raises(UnknownEvent):
        catalog.check_publish("sales.*")


def test_longest_pattern_wins() -> None:
    catalog = Catalog.build(
        {"a.*": EventDefinition(description="short"), "a.b.*": EventDefinition(description="long")},
        [], strict=True,
    )
    definition = catalog.definition("a.b.c")
    assert definition is not None and definition.description == "long"


def test_resolver_loading() -> None:
    func = load_resolver("json:dumps")
    assert func({"a": 1}) == '{"a": 1}'  # type: ignore[comparison-overlap]
    with pytest.raises(ConfigError, match=r"package\.module:function"):
        load_resolver("nocolon")
    with pytest.raises(ConfigError, match="cannot load resolver"):
        load_resolver("no_such_module_xyz:f")
