"""firmware.config.dump_toml: the project's one TOML writer."""

from __future__ import annotations

import datetime
import math
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import dump_toml, load_config
from tests.support.config import BASE

keys = st.text(max_size=8)
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
# No None inside lists: TOML has no null, and leaving it out would change the list.
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(keys, inner | st.none(), max_size=4)
    ),
    max_leaves=20,
)
documents = st.dictionaries(keys, values | st.none(), max_size=6)


def _without_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _without_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_without_none(x) for x in v]
    return v


@settings(max_examples=400, deadline=None)
@given(documents)
def test_every_document_round_trips_through_tomllib(data: dict[str, Any]) -> None:
    assert tomllib.loads(dump_toml(data)) == _without_none(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(keys, scalars | st.lists(scalars, max_size=3)), min_size=1))
def test_a_list_of_tables_is_an_array_of_tables(rows: list[dict[str, Any]]) -> None:
    text = dump_toml({"station": rows, "fleet": {"name": "T01"}})
    assert text.count("[[station]]") == len(rows)
    assert tomllib.loads(text) == {"station": rows, "fleet": {"name": "T01"}}


def test_layout_is_plain_values_then_tables() -> None:
    data = {
        "b": {"c": 'x"y\n', "d": [1, 2.5], "e": {"f": True}},
        "a": 1,
        "gone": None,
        "odd key": "\x7f\x00é",
        "inf": math.inf,
    }
    assert dump_toml(data) == (
        'a = 1\n"odd key" = "\\u007f\\u0000é"\ninf = inf\n'
        '\n[b]\nc = "x\\"y\\n"\nd = [1, 2.5]\n'
        "\n[b.e]\nf = true\n"
    )


def test_nan_is_written_as_toml_nan() -> None:
    assert math.isnan(tomllib.loads(dump_toml({"x": math.nan}))["x"])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"storage": {"path": Path("/x")}}, "cannot write storage.path to TOML: PosixPath"),
        ({"a": {"when": datetime.date(2026, 1, 1)}}, "cannot write a.when to TOML: date"),
        ({"n": 2**63}, "cannot write n to TOML: an integer outside 64 bits"),
        ({"n": [1, None]}, "cannot write n to TOML: None inside a list"),
        ({"t": {1: "x"}}, "cannot write t to TOML: key 1"),
        ({"s": "\ud800"}, "cannot write s to TOML: a lone surrogate"),
        ({"d": [Decimal("1.5")]}, "cannot write d to TOML: Decimal"),
    ],
)
def test_unsupported_values_are_a_clear_error(data: dict[str, Any], words: str) -> None:
    with pytest.raises(TypeError, match="^" + words.replace(".", r"\.")):
        dump_toml(data)


def test_a_document_must_be_a_table() -> None:
    with pytest.raises(TypeError, match="a TOML document is a table, not list"):
        dump_toml([1, 2])  # type: ignore[arg-type]


def test_a_station_configuration_round_trips_through_the_model(tmp_path: Path) -> None:
    (tmp_path / "issuers.jwks.json").write_text('{"keys": []}')
    first = tmp_path / "station.toml"
    first.write_text(dump_toml(BASE))
    config = load_config(first)
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(config.model_dump(mode="json")))
    assert load_config(again) == config
