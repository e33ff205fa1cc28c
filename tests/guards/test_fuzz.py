"""Fuzzing the Lucene parser and the settings loader: a clean error or a result, nothing else.

The query functions may only raise ``InvalidQuery``, and a compiled filter
only ever answers True or False. The settings loader may only raise
``ConfigError``, whatever the environment variables or the TOML file hold.
The crashes the fuzzing found (fuzzy/boost numbers, non-UTF-8 files,
malformed JSON variables, infinite durations) are pinned by the tests at the
end.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncevents.core.search import check_query, compile_filter
from asyncevents.core.settings import Settings, load_settings
from asyncevents.errors import ConfigError, InvalidQuery

_FIELDS = sorted(Settings.model_fields)
_WORDS = ["AND", "OR", "NOT", "TO", "status", "event_name", "uuid", "created", "success",
          "sink", "recipient", "subscription_id", "data.", "data.a.b", "data.items.sku",
          "nosuch", "*", "?", ":", '"', "(", ")", "[", "]", "{", "}", "~", "^", "\\", "/", "+",
          "-", "!", "&&", "||", "<", ">", "=", " ", "\t", "\n", "é", "🎉", "\x00", "2024-01-01",
          "now-1d", "1.5", "-3", "true", "dead", "sales.*"]

queries = st.one_of(
    st.lists(st.sampled_from(_WORDS), max_size=24).map("".join),
    st.lists(st.sampled_from(_WORDS) | st.text(max_size=4), max_size=12).map(" ".join),
    st.text(max_size=60),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=12,
)
payloads = st.dictionaries(st.sampled_from(["a", "items", "customer", "n", "x"]) | st.text(
    max_size=4), json_values, max_size=4)
_FUZZ = settings(max_examples=400, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@_FUZZ
@given(queries)
def test_check_query_raises_only_invalid_query(query: str) -> None:
    try:
        check_query(query)
    except InvalidQuery as exc:
        assert str(exc) and "\n" not in str(exc)


@_FUZZ
@given(queries, st.lists(payloads, min_size=1, max_size=3))
def test_filters_raise_only_invalid_query_and_answer_bools(
    query: str, samples: list[dict[str, Any]]
) -> None:
    try:
        matcher = compile_filter(query)
    except InvalidQuery:
        return
        return
    for payload in samples:
        assert matcher(payload) in (True, False)


# -- settings --------------------------------------------------------------------------

env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=30)
env_values = env_text | st.sampled_from(
    ["", "0", "-1", "1e999", "nan", "inf", "-inf", "true", "no", "[]", "{}", "{bad", "null",
     "1.2.3.4/40", "::1/129", "a,,b", "quadratic", "127.0.0.0/8,localhost", "sqlite://", "*"])


def _load_with_env(variables: dict[str, str], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("ASYNCEVENTS_"):
                patch.delenv(key)
        patch.chdir(tmp_path)
        for key, value in variables.items():
            patch.setenv(key, value)
        try:
            load_settings()
        except ConfigError as exc:
            assert str(exc) and "\n" not in str(exc)


@_FUZZ
@given(variables=st.dictionaries(
    st.sampled_from(_FIELDS).map(lambda f: f"ASYNCEVENTS_{f.upper()}"), env_values, max_size=5))
def test_environment_variables_give_settings_or_a_config_error(
    variables: dict[str, str], tmp_path: Path
) -> None:
    _load_with_env(variables, tmp_path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"


toml_scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
                | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text("abcxyz.*", min_size=1, max_size=6), inner,
                                             max_size=3), max_leaves=8)
toml_documents = st.one_of(
    st.dictionaries(st.sampled_from([*_FIELDS, "unknown", "events"]), toml_values,
                    max_size=6).map(
        lambda d: "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())),
    st.text(max_size=80),
    st.lists(st.sampled_from(["[events.", '"a.b"', "]", "\n", "resolver = ", '"x:y"',
                              "description = ", "1", "[[", "=", "events = 3", '"""']),
             max_size=12).map("".join),
)


@_FUZZ
@given(document=toml_documents)
def test_toml_files_give_settings_or_a_config_error(document: str, tmp_path: Path) -> None:
    config = tmp_path / "fuzz.toml"
    config.write_text(document, encoding="utf-8")
    _load_with_env({"ASYNCEVENTS_CONFIG": str(config)}, tmp_path)


# -- crashes found by the fuzzing, fixed ----------------------------------------------

@pytest.mark.parametrize("query", ["status~.", "status^.", "a~1.2.3", "a^1..2"])
@pytest.mark.parametrize("check", [check_query, compile_filter], ids=["search", "filter"])
def test_odd_fuzzy_and_boost_numbers_are_invalid_queries(check: Any, query: str) -> None:
    with pytest.raises(InvalidQuery):
        check(query)


def test_a_config_file_that_is_not_utf8_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('event_source = "café"\n'.encode("latin-1"))
    monkeypatch.setenv("ASYNCEVENTS_CONFIG", str(config))
    with pytest.raises(ConfigError):
        load_settings()


def test_malformed_events_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCEVENTS_EVENTS", "{not json")
    with pytest.raises(ConfigError):
        load_settings()


@pytest.mark.parametrize("values", [{"backoff_base": math.inf, "max_backoff": math.inf},
                                    {"http_timeout": math.inf}, {"lease_seconds": math.inf}],
                         ids=["backoff", "http_timeout", "lease_seconds"])
def test_infinite_durations_are_config_errors(values: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        load_settings(**values)
