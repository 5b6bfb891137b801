"""The decision table and the temperature assessment, as pure functions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.config import SamplingSection
from kiosk_ui.core.codes import Verdict
from kiosk_ui.core.rules import (
    Decision,
    Lane,
    TemperatureStatus,
    Thresholds,
    assess_temperature,
    decide,
    likely_mode,
    needs_temperature,
    queue_mode,
)
from kiosk_ui.errors import RuleViolation
from tests.support.station import rejected, resident

T = Thresholds()
REASONS = [
    "not_a_code",
    "bad_format",
    "bad_alg",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_claims",
    "no_code",
]


def normal(reading: float = 36.5):
    return assess_temperature([reading], T)


# -- temperature ----------------------------------------------------------------------------


def test_one_normal_reading_settles_it() -> None:
    a = assess_temperature([36.6], T)
    assert (a.status, a.temperature_c, a.used) == (TemperatureStatus.NORMAL, 36.6, 1)


def test_no_reading_asks_for_one() -> None:
    a = assess_temperature([], T)
    assert a.need_reading and a.temperature_c is None


def test_fever_reading_asks_for_a_second() -> None:
    a = assess_temperature([37.3], T)  # at the threshold counts as fever
    assert a.status is TemperatureStatus.NEED_READING


def test_two_fever_readings_are_fever() -> None:
    a = assess_temperature([37.6, 37.3], T)
    assert (a.status, a.temperature_c, a.used) == (TemperatureStatus.FEVER, 37.3, 2)


def test_fever_then_normal_continues_with_the_second() -> None:
    a = assess_temperature([37.6, 36.9], T)
    assert (a.status, a.temperature_c, a.used) == (TemperatureStatus.NORMAL, 36.9, 2)


def test_just_below_threshold_is_normal() -> None:
    assert assess_temperature([37.29], T).status is TemperatureStatus.NORMAL


def test_implausible_is_retaken_then_referred_at_max_tries() -> None:
    assert assess_temperature([20.0], T).need_reading
    assert assess_temperature([20.0, 45.0], T).need_reading
    a = assess_temperature([20.0, 45.0, 33.9], T)
    assert (a.status, a.temperature_c, a.implausible) == (TemperatureStatus.IMPLAUSIBLE, None, 3)


def test_implausible_then_good_reading_is_normal() -> None:
    a = assess_temperature([10.0, 36.4], T)
    assert (a.status, a.temperature_c, a.implausible) == (TemperatureStatus.NORMAL, 36.4, 1)


def test_plausible_bounds_are_inclusive_and_nan_is_implausible() -> None:
    assert assess_temperature([34.0], T).status is TemperatureStatus.NORMAL
    assert assess_temperature([42.5, 42.5], T).status is TemperatureStatus.FEVER
    assert assess_temperature([math.nan, math.inf, -math.inf], T).status is (
        TemperatureStatus.IMPLAUSIBLE
    )


def test_implausible_between_two_fever_readings_does_not_break_the_pair() -> None:
    a = assess_temperature([38.0, 99.0, 38.1], T)
    assert (a.status, a.used) == (TemperatureStatus.FEVER, 3)


def test_configured_thresholds_apply() -> None:
    t = Thresholds(fever_threshold_c=37.0, plausible_min_c=35.0, max_tries=1)
    assert assess_temperature([37.0, 37.0], t).status is TemperatureStatus.FEVER
    assert assess_temperature([34.9], t).status is TemperatureStatus.IMPLAUSIBLE


readings = st.lists(
    st.one_of(
        st.floats(min_value=30.0, max_value=45.0),
        st.sampled_from([math.nan, math.inf, 37.3, 34.0, 42.5]),
    ),
    max_size=12,
)


@given(readings)
def test_assessment_rests_on_a_prefix_and_later_readings_change_nothing(rs: list[float]) -> None:
    a = assess_temperature(rs, T)
    assert 0 <= a.used <= len(rs)
    if a.done:
        assert assess_temperature(rs[: a.used], T).status is a.status
        # two plausible readings at most, and implausible ones only up to max_tries
        assert a.used <= T.max_tries + 1
        assert assess_temperature([*rs, 36.5, 40.0], T).status is a.status
        # the readings before ``used`` did not settle it yet
        assert assess_temperature(rs[: a.used - 1], T).need_reading
    else:
        assert a.used == len(rs)
    assert a.implausible <= T.max_tries
    assert (a.implausible == T.max_tries) == (a.status is TemperatureStatus.IMPLAUSIBLE)


@given(readings)
def test_a_settled_temperature_is_plausible_and_fever_is_at_or_above(rs: list[float]) -> None:
    a = assess_temperature(rs, T)
    if a.status is TemperatureStatus.FEVER:
        assert a.temperature_c is not None and a.temperature_c >= T.fever_threshold_c
    if a.status is TemperatureStatus.NORMAL:
        assert a.temperature_c is not None
        assert T.plausible_min_c <= a.temperature_c < T.fever_threshold_c


# -- decision table, row by row ---------------------------------------------------------------


@pytest.mark.parametrize("reason", REASONS)
def test_row_rejected_code_is_referred_with_its_reason(reason: str) -> None:
    o = decide(rejected(reason), None, already_sampled=False)
    assert (o.decision, o.lane, o.reason) == (Decision.REFER, Lane.STAFF, reason)
    assert o.alert_kind is None


def test_row_red_code_isolates_without_temperature() -> None:
    v = resident("r1", "red")
    assert needs_temperature(v) is False
    o = decide(v, None, already_sampled=True)
    assert (o.decision, o.lane, o.reason, o.alert_kind) == (
        Decision.ISOLATE,
        Lane.ISOLATION,
        "red_code",
        "red_code",
    )


@pytest.mark.parametrize("color", ["green", "yellow"])
def test_row_fever_isolates(color: str) -> None:
    o = decide(resident("r1", color), assess_temperature([38.0, 38.2], T), already_sampled=True)
    assert (o.decision, o.lane, o.reason, o.alert_kind) == (
        Decision.ISOLATE,
        Lane.ISOLATION,
        "fever",
        "fever",
    )


def test_row_fever_then_normal_continues() -> None:
    o = decide(resident("r1"), assess_temperature([38.0, 36.8], T), already_sampled=False)
    assert (o.decision, o.lane, o.reason) == (Decision.POOL, Lane.MAIN, None)


def test_row_implausible_refers() -> None:
    o = decide(resident("r1"), assess_temperature([1.0, 2.0, 3.0], T), already_sampled=True)
    assert (o.decision, o.lane, o.reason) == (Decision.REFER, Lane.STAFF, "implausible_temperature")


@pytest.mark.parametrize("color", ["green", "yellow"])
def test_row_already_sampled_refers(color: str) -> None:
    o = decide(resident("r1", color, cat=["elderly"]), normal(), already_sampled=True)
    assert (o.decision, o.lane, o.reason) == (Decision.REFER, Lane.STAFF, "already_sampled")


def test_row_yellow_goes_single() -> None:
    o = decide(resident("r1", "yellow", cat=["child"]), normal(), already_sampled=False)
    assert (o.decision, o.lane, o.reason) == (Decision.SINGLE, Lane.SINGLE, None)


@pytest.mark.parametrize("cat", ["elderly", "child", "pregnant", "disabled"])
def test_row_green_priority_group_takes_green_lane(cat: str) -> None:
    o = decide(resident("r1", "green", cat=[cat]), normal(), already_sampled=False)
    assert (o.decision, o.lane, o.reason) == (Decision.POOL, Lane.GREEN, None)


def test_row_green_goes_main() -> None:
    o = decide(resident("r1"), normal(), already_sampled=False)
    assert (o.decision, o.lane, o.reason) == (Decision.POOL, Lane.MAIN, None)


def test_temperature_is_needed_for_green_and_yellow() -> None:
    assert needs_temperature(resident("r1", "green"))
    assert needs_temperature(resident("r1", "yellow"))
    assert not needs_temperature(rejected("expired"))
    for t in (None, assess_temperature([], T), assess_temperature([38.0], T)):
        with pytest.raises(RuleViolation) as info:
            decide(resident("r1"), t, already_sampled=False)
        assert info.value.code == "temperature_needed"
        assert info.value.message("zh") != info.value.message("en")


# -- first row wins (property) ----------------------------------------------------------------

verdicts = st.one_of(
    st.builds(rejected, st.sampled_from(REASONS)),
    st.builds(
        lambda sub, color, cat: resident(sub, color, None, cat),
        st.text(min_size=1, max_size=8),
        st.sampled_from(["green", "yellow", "red"]),
        st.lists(st.sampled_from(["elderly", "child", "pregnant", "disabled"]), max_size=2),
    ),
)


def _oracle(v: Verdict, temp_status: TemperatureStatus, sampled: bool) -> tuple[str, str]:
    """The table read literally: each row's condition in order."""
    table = [
        (not v.valid, ("refer", "staff")),
        (v.valid and v.claims is not None and v.claims.color == "red", ("isolate", "isolation")),
        (temp_status is TemperatureStatus.FEVER, ("isolate", "isolation")),
        (temp_status is TemperatureStatus.IMPLAUSIBLE, ("refer", "staff")),
        (sampled, ("refer", "staff")),
        (v.claims is not None and v.claims.color == "yellow", ("single", "single")),
        (v.claims is not None and bool(v.claims.cat), ("pool", "green")),
        (True, ("pool", "main")),
    ]
    return next(result for cond, result in table if cond)


@given(verdicts, readings, st.booleans())
def test_first_row_that_applies_wins(v: Verdict, rs: list[float], sampled: bool) -> None:
    a = assess_temperature(rs, T)
    if needs_temperature(v) and a.need_reading:
        with pytest.raises(RuleViolation):
            decide(v, a, sampled)
        return
    o = decide(v, a, sampled)
    assert (o.decision.value, o.lane.value) == _oracle(v, a.status, sampled)
    assert (o.reason is None) == (o.decision in (Decision.POOL, Decision.SINGLE))


# -- thresholds -------------------------------------------------------------------------------


def test_thresholds_take_gateway_overrides_over_the_file() -> None:
    base = SamplingSection(pool_size=10, fever_threshold_c=37.3)
    t = Thresholds.from_settings(
        base,
        {"sampling.pool_size": 5, "sampling.fever_threshold_c": 37.8, "kiosk.language": "en"},
    )
    assert (t.pool_size, t.fever_threshold_c, t.resample_window_h) == (5, 37.8, 12)
    assert t.resample_window_s == 12 * 3600


def test_inconsistent_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        Thresholds.from_settings(SamplingSection(), {"sampling.pool_size": 50})


_FIELDS = sorted(SamplingSection.model_fields)


@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from([f"sampling.{f}" for f in _FIELDS]),
            st.sampled_from(["kiosk.language", "sampling.nope", "pool_size", "sampling."]),
            st.text(max_size=12),
        ),
        st.integers(-5, 50),
        max_size=8,
    )
)
def test_overrides_change_only_the_sampling_keys_they_name(overrides: dict[str, int]) -> None:
    base = SamplingSection()
    merged = base.with_overrides(overrides)
    assert sorted(merged) == _FIELDS
    for name in _FIELDS:
        expected = overrides.get(f"sampling.{name}", getattr(base, name))
        assert merged[name] == expected
    assert base == SamplingSection()  # the section itself never changes


@given(
    st.sampled_from(["green", "yellow", "red"]),
    st.lists(st.sampled_from(["elderly", "child", "pregnant", "disabled"]), max_size=2),
    st.floats(min_value=34.0, max_value=37.2),
)
def test_the_likely_tube_is_what_the_table_decides_for_a_normal_check_in(
    color: str, cat: list[str], celsius: float
) -> None:
    verdict = resident("R1", color, cat=cat)
    temperature = assess_temperature([celsius], T) if needs_temperature(verdict) else None
    decided = decide(verdict, temperature, already_sampled=False)
    assert likely_mode(color) == queue_mode(decided.decision)
    assert likely_mode("purple") is None
