"""Lane lights and buzzer on gpiozero's MockFactory: pin timelines, conflicts, pin maps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gpiozero import LED
from gpiozero.exc import GPIOPinInUse, PinInvalidPin
from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st

from firmware.config import LightsSection, parse_config
from firmware.errors import ConfigError, LightsError, PinMapError
from firmware.lights import GREEN_OUTPUTS, OUTPUTS, STATES, LaneLights, lights_for, plan
from tests.support.config import BASE

PINS = LightsSection()
BASE_DIR = Path("/nonexistent")


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def lights(factory):
    ll = LaneLights(PINS, factory)
    yield ll
    ll.close()


def pin(factory, output: str):
    return factory.pin(getattr(PINS, output))


def levels(factory) -> dict[str, bool]:
    return {name: bool(pin(factory, name).state) for name in OUTPUTS}


def high_intervals(factory, output: str, end: float) -> list[tuple[float, float]]:
    """When the output's pin was high, from its recorded timeline (MockPin records the time
    since the previous change; the timelines start together at ``clear_states``)."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    t = 0.0
    for s in pin(factory, output).states:
        t += s.timestamp
        if s.state and since is None:
            since = t
        elif not s.state and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end))
    return out


# -- the fake refuses what the board refuses -----------------------------------------------


def test_mock_factory_refuses_a_pin_in_use_and_a_pin_the_board_lacks(factory) -> None:
    held = LED(17, pin_factory=factory)
    with pytest.raises(GPIOPinInUse):
        LED(17, pin_factory=factory)
    with pytest.raises(PinInvalidPin):
        LED(40, pin_factory=factory)
    held.close()


# -- states ------------------------------------------------------------------------------


def test_every_state_lights_its_outputs_and_snapshot_names_them(factory, lights) -> None:
    lights.show("go", "main")
    assert levels(factory) == {**dict.fromkeys(OUTPUTS, False), "main_green": True}
    assert lights.snapshot() == {"main": "go", "green": "idle", "isolation": "idle"}
    lights.show("go", "single")
    assert lights.snapshot() == {"main": "go", "green": "idle", "isolation": "idle"}
    lights.show("go", "green")
    assert levels(factory) == {**dict.fromkeys(OUTPUTS, False), "green_lane": True}
    assert lights.snapshot() == {"main": "idle", "green": "go", "isolation": "idle"}
    lights.show("stop")
    assert levels(factory) == {**dict.fromkeys(OUTPUTS, False), "main_red": True}
    lights.show("isolate")
    assert lights.snapshot() == {"main": "stop", "green": "idle", "isolation": "isolate"}
    got = levels(factory)
    assert got["main_red"] and not got["main_green"] and not got["green_lane"]
    lights.show("idle")
    assert levels(factory) == dict.fromkeys(OUTPUTS, False)
    assert lights.snapshot() == {"main": "idle", "green": "idle", "isolation": "idle"}


def test_wait_blinks_amber_at_one_hertz(factory, lights) -> None:
    amber = pin(factory, "main_amber")
    amber.clear_states()
    lights.show("wait")
    time.sleep(1.25)
    lights.show("idle")
    # MockPin records each change with the time since the previous one: dark, on at once,
    # off after 0.5 s, on after 0.5 s, ..., off for idle.
    assert [s.state for s in amber.states][:3] == [False, True, False]
    ons = [i for i, s in enumerate(amber.states) if s.state]
    assert len(ons) >= 2
    first_on = ons[0]
    assert amber.states[first_on].timestamp < 0.1  # lit at once
    assert amber.states[first_on + 1].timestamp == pytest.approx(0.5, abs=0.15)  # on 0.5 s
    assert amber.states[first_on + 2].timestamp == pytest.approx(0.5, abs=0.15)  # off 0.5 s
    assert not amber.states[-1].state  # dark after idle


def test_isolate_flashes_the_beacon_and_beeps_three_times(factory, lights) -> None:
    buzzer = pin(factory, "buzzer")
    buzzer.clear_states()
    lights.show("isolate")
    time.sleep(1.6)
    beeps = sum(1 for s in buzzer.states if s.state)
    assert beeps == 3
    assert not buzzer.state  # three beeps, then silence
    beacon_flashes = sum(1 for s in pin(factory, "isolation_beacon").states if s.state)
    assert beacon_flashes >= 3  # still flashing
    lights.show("idle")


def test_fault_blinks_amber_fast_and_nothing_else(factory, lights) -> None:
    lights.show("fault")
    time.sleep(0.6)
    assert sum(1 for s in pin(factory, "main_amber").states if s.state) >= 2  # 4 Hz
    for name in ("main_green", "green_lane", "isolation_beacon", "main_red"):
        assert not any(s.state for s in pin(factory, name).states)
    assert lights.snapshot()["main"] == "fault"


def test_green_never_overlaps_the_isolation_beacon_across_transitions(factory, lights) -> None:
    sequence = [
        ("go", "main"),
        ("isolate", None),
        ("go", "green"),
        ("isolate", None),
        ("wait", None),
        ("isolate", None),
        ("go", "single"),
        ("fault", None),
    ]
    for name in OUTPUTS:
        pin(factory, name).clear_states()
    for state, lane in sequence:
        lights.show(state, lane)  # type: ignore[arg-type]
        time.sleep(0.06)
    end = 1e9
    beacon = high_intervals(factory, "isolation_beacon", end)
    assert beacon  # the beacon did light
    for green in GREEN_OUTPUTS:
        lit = high_intervals(factory, green, end)
        assert lit
        for g0, g1 in lit:
            for b0, b1 in beacon:
                assert g1 <= b0 or b1 <= g0, f"{green} lit while the beacon was on"


@given(st.sampled_from(STATES), st.sampled_from(["main", "green", "single", None]))
def test_no_plan_lights_green_with_the_beacon(state, lane) -> None:
    try:
        signals = plan(state, lane)
    except LightsError:
        assert state == "go"
        return
    lit_green = signals["main"] == "go" or signals["green"] == "go"
    assert not (lit_green and signals["isolation"] == "isolate")
    assert list(signals.values()).count("go") <= 1


def test_bad_states_and_lanes_are_refused(lights) -> None:
    with pytest.raises(LightsError, match="unknown light state"):
        lights.show("party")  # type: ignore[arg-type]
    with pytest.raises(LightsError, match="needs lane"):
        lights.show("go")
    with pytest.raises(LightsError, match="needs lane"):
        lights.show("go", "isolation")


def test_decisions_map_to_lights() -> None:
    assert lights_for("pool", "main") == ("go", "main")
    assert lights_for("pool", "green") == ("go", "green")
    assert lights_for("single", "single") == ("go", "single")
    assert lights_for("isolate", "isolation") == ("isolate", None)
    assert lights_for("refer", "staff") == ("stop", None)
    assert lights_for("wait", None) == ("wait", None)
    with pytest.raises(LightsError):
        lights_for("pool", "isolation")


def test_lamp_test_lights_one_output_alone(factory, lights) -> None:
    for name in OUTPUTS:
        lights.lamp_test(name)
        assert lights.outputs() == {n: n == name for n in OUTPUTS}
    lights.lamp_test(None)
    assert not any(lights.outputs().values())
    with pytest.raises(LightsError):
        lights.lamp_test("disco")


def test_expected_outputs_match_read_back_levels(lights) -> None:
    for state in STATES:
        lights.show(state, "main" if state == "go" else None)
        got = lights.outputs()
        for name, want in lights.expected_outputs().items():
            if want is not None:
                assert got[name] == want, (state, name)


def test_closed_lights_refuse_to_show(factory) -> None:
    ll = LaneLights(PINS, factory)
    ll.close()
    with pytest.raises(LightsError, match="closed"):
        ll.show("idle")


# -- pin maps ----------------------------------------------------------------------------


def test_pin_map_reusing_a_pin_is_a_config_error_naming_both_keys() -> None:
    data = {**BASE, "hardware": {"backend": "sim", "lights": {"main_red": 22}}}
    with pytest.raises(ConfigError) as exc:
        parse_config(data, BASE_DIR)
    assert "hardware.lights" in str(exc.value)
    assert "main_green and main_red both use GPIO 22" in str(exc.value)


@pytest.mark.parametrize(
    ("pin_no", "message"), [(28, "GPIO 0 to 27"), (2, "I2C"), (3, "I2C"), (-1, "GPIO 0 to 27")]
)
def test_pin_map_naming_a_pin_the_header_lacks_or_the_i2c_bus_is_refused(pin_no, message):
    data = {**BASE, "hardware": {"backend": "sim", "lights": {"buzzer": pin_no}}}
    with pytest.raises(ConfigError, match=message):
        parse_config(data, BASE_DIR)


def test_lane_lights_refuse_a_reused_pin_even_without_config_validation(factory) -> None:
    pins = LightsSection.model_construct(**{**PINS.model_dump(), "buzzer": 17})
    with pytest.raises(PinMapError, match="buzzer and main_red both use GPIO 17"):
        LaneLights(pins, factory)


def test_lane_lights_refuse_a_pin_the_board_does_not_have(factory) -> None:
    pins = LightsSection.model_construct(**{**PINS.model_dump(), "green_lane": 40})
    with pytest.raises(PinMapError, match="green_lane = 40: the board has no GPIO 40"):
        LaneLights(pins, factory)
    # Nothing stays claimed: the same pins can be used again.
    LaneLights(PINS, factory).close()


def test_lane_lights_refuse_a_pin_another_device_holds(factory) -> None:
    other = LED(PINS.isolation_beacon, pin_factory=factory)
    with pytest.raises(PinMapError, match="isolation_beacon = 24: GPIO 24 is already in use"):
        LaneLights(PINS, factory)
    other.close()
    LaneLights(PINS, factory).close()
