"""The drills' clock step (kiosk_ui.drills.clock): what it parses, what it refuses, and what
it does to the simulated clock. The shipped drill that uses it runs in test_simulate.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk_ui.clock_sources import SimClock
from kiosk_ui.drills.clock import ClockStep
from kiosk_ui.drills.scenario import parse
from kiosk_ui.errors import DrillError


def one(step: dict[str, Any]) -> Any:
    return parse({"name": "t", "steps": [{"scan": "TB1"}, step]}).steps[1]


def test_set_jump_and_ntp_parse() -> None:
    assert one({"clock": {"set": "1970-01-01T00:00:00Z", "ntp": False}}) == ClockStep(
        0.0, None, False
    )
    assert one({"clock": {"jump_s": 3600}}) == ClockStep(None, 3600.0, None)
    assert one({"clock": {"ntp": True}}) == ClockStep(None, None, True)
    assert one({"expect": {"clock": "untrusted"}}).checks == {"clock": "untrusted"}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({}, "'clock' is an object"),
        ("1970", "'clock' is an object"),
        ({"sett": "1970-01-01T00:00:00Z"}, "unknown key 'sett'"),
        ({"set": "1970-01-01T00:00:00Z", "jump_s": 5}, "not both"),
        ({"set": "yesterday"}, "not an RFC 3339 time"),
        ({"set": "1970-01-01T00:00:00"}, "needs a time zone"),
        ({"set": 0}, "'set' is an RFC 3339 time"),
        ({"jump_s": True}, "'jump_s' must be a number"),
        ({"jump_s": "60"}, "'jump_s' must be a number"),
        ({"ntp": "yes"}, "'ntp' must be true or false"),
    ],
)
def test_a_bad_clock_step_is_refused_naming_the_step(value: Any, words: str) -> None:
    with pytest.raises(DrillError, match=r"step 2 \(steps\[1\]\)") as caught:
        one({"clock": value})
    assert words in str(caught.value)


@given(st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers()))
def test_any_clock_object_parses_or_is_a_drill_error(value: dict[str, Any]) -> None:
    try:
        step = one({"clock": value})
    except DrillError:
        return
    assert isinstance(step, ClockStep) and set(value) <= {"set", "jump_s", "ntp"}


def test_the_step_moves_the_simulated_clock() -> None:
    clock = SimClock()
    ClockStep(set_at=0.0, ntp=False).apply(clock)
    assert clock.now() < 5 and clock.ntp() is False
    ClockStep(jump_s=3600.0).apply(clock)
    assert 3600 <= clock.now() < 3605
    ClockStep(ntp=True).apply(clock)
    assert abs(clock.now() - time.time()) < 5 and clock.ntp() is True
    assert "jump +3600 s" in ClockStep(jump_s=3600.0).describe()
