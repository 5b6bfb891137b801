"""The scenario format of ``station simulate``: every step checked before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_ui.drills.scenario import (
    EXPECT_KEYS,
    STEP_KEYS,
    Distort,
    Expect,
    Gateway,
    ManualId,
    Scan,
    Show,
    Touch,
    Wait,
    load,
    parse,
)
from kiosk_ui.errors import DrillError

ROOT = Path(__file__).resolve().parents[1]


def scenario(*steps: Any) -> dict[str, Any]:
    return {"name": "t", "steps": list(steps)}


def test_the_spec_example_parses() -> None:
    s = parse(
        scenario(
            {"scan": "TB2026112300001"},
            {"show": "HC1:A", "temperature": 36.6},
            {
                "show": "HC1:B",
                "temperature": [37.6, 36.9],
                "distort": {"rotate": 20, "blur": 1.0, "scale": 0.6},
            },
            {"expect": {"decision": "pool", "lane": "main", "position": 2}},
            {"touch": "seal"},
            {"wait": 0.5},
        )
    )
    assert s.steps == (
        Scan("TB2026112300001"),
        Show("HC1:A", (36.6,)),
        Show("HC1:B", (37.6, 36.9), Distort(rotate=20, blur=1.0, scale=0.6)),
        Expect({"decision": "pool", "lane": "main", "position": 2}),
        Touch("seal"),
        Wait(0.5),
    )


def test_extensions_parse() -> None:
    s = parse(
        scenario(
            {"gateway": "offline"},
            {"id": "11010519491231002X", "temperature": 36.5},
            {"touch": "void", "reason": "spilled"},
            {"touch": "remove", "resident": "r1", "reason": "left"},
            {"touch": "dispatch", "box": "BX0001"},
            {"gateway": "online"},
        )
    )
    assert s.steps[0] == Gateway(False)
    assert s.steps[1] == ManualId("11010519491231002X", (36.5,))
    assert s.steps[3] == Touch("remove", reason="left", resident="r1")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"scan": "TB1"}, {"shwo": "HC1:A"}], r"step 2 \(steps\[1\]\): unknown key 'shwo'"),
        (
            [{"show": "HC1:A", "tempreature": 36.6}],
            r"step 1 \(steps\[0\]\): unknown key 'tempreature' in a 'show' step",
        ),
        (
            [{"scan": "TB1"}, {"expect": {"positon": 1}}],
            r"step 2 .*unknown key 'positon' in 'expect'",
        ),
        ([{"show": "HC1:A", "distort": {"skew": 3}}], r"unknown key 'skew' in 'distort'"),
        ([{"scan": "TB1", "show": "HC1:A"}], r"one action per step"),
        ([{"show": "HC1:A", "temperature": "hot"}], r"'temperature' must be a number"),
        ([{"show": "HC1:A", "temperature": []}], r"'temperature' must be a number"),
        ([{"touch": "seal", "reason": "x"}], r"a 'seal' touch takes no 'reason'"),
        ([{"touch": "void"}], r"a 'void' touch needs 'reason'"),
        ([{"touch": "explode"}], r"unknown touch 'explode'"),
        ([{"wait": -1}], r"'wait' must be seconds >= 0"),
        ([{"expect": {"lane": "main"}}], r"checks the step before it"),
        ([{"scan": "TB1"}, {"expect": {"position": "2"}}], r"'position' must be an integer"),
        ([{"scan": "TB1"}, {"expect": {"lights": ["main"]}}], r"'lights' must map"),
        ([{"scan": ""}], r"'scan' must be a non-empty string"),
        (["scan"], r"a step is a non-empty object"),
        ([{"gateway": "down"}], r"'gateway' is 'online' or 'offline'"),
    ],
)
def test_each_bad_step_is_named_with_its_index(steps: list[Any], message: str) -> None:
    with pytest.raises(DrillError, match=message):
        parse(scenario(*steps))


def test_bad_top_level() -> None:
    with pytest.raises(DrillError, match="'steps' must be a non-empty list"):
        parse({"name": "x", "steps": []})
    with pytest.raises(DrillError, match="unknown top-level key 'step'"):
        parse({"name": "x", "step": []})
    with pytest.raises(DrillError, match="JSON object"):
        parse([])


def test_load_reports_json_errors_with_line(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    p.write_text('{"name": "x",\n "steps": [}')
    with pytest.raises(DrillError, match=r"line 2"):
        load(p)
    with pytest.raises(DrillError, match="cannot read"):
        load(tmp_path / "none.json")


keys = st.text(st.characters(categories=["Ll"]), min_size=1, max_size=12)


@given(keys)
def test_any_unknown_step_key_is_an_error_never_ignored(key: str) -> None:
    step = {"show": "HC1:A", key: 1}
    if key in STEP_KEYS["show"]:
        return
    with pytest.raises(DrillError, match=r"step 2 \(steps\[1\]\)"):
        parse(scenario({"scan": "TB1"}, step))


@given(keys)
def test_any_unknown_expect_key_is_an_error(key: str) -> None:
    if key in EXPECT_KEYS:
        return
    with pytest.raises(DrillError, match="in 'expect'"):
        parse(scenario({"scan": "TB1"}, {"expect": {key: 1}}))


def test_every_shipped_drill_parses() -> None:
    drills = sorted((ROOT / "examples" / "drills").glob("*.json"))
    assert len(drills) >= 7
    for path in drills:
        s = load(path)
        assert s.steps, path
        json.loads(path.read_text())
