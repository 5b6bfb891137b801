"""Lane lights and buzzer on gpiozero's MockFactory: pin timelines, conflicts, pin maps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gpiozero import LED
from gpiozero.exc import GPIOPinInUse, PinInvalidPin
from hypothesis import given
from hypothesis import strategies as st

from firmware.config import LightsSection, parse_config
from firmware.errors import ConfigError, LightsError, PinMapError
from firmware.lights import GREEN_OUTPUTS, OUTPUTS, STATES, LaneLights, plan
from tests.support.config import BASE
from tests.support.pin_timeline import TimelineFactory, phases, wait_until

PINS = LightsSection()
BASE_DIR = Path("/nonexistent")


@pytest.fixture
def factory():
    f = TimelineFactory()
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


# Blink timing. The pattern runs on gpiozero's blink threads in real time, so the checks
# rest on what a loaded machine cannot change: the order and count of pin changes in one
# timeline, and lower bounds on each phase (a thread's wait never ends early). Upper bounds
# are generous and apply to the shortest of several phases: one late wake-up cannot fail
# them, a wrong rate does.
EARLY = 0.02  # timer granularity: a phase may be measured this much under its nominal time
LATE = 0.3  # how much a loaded machine may stretch the shortest of several phases


def lit_count(factory: TimelineFactory, mark: int, output: str) -> int:
    return sum(1 for c in factory.since(mark, getattr(PINS, output)) if c.state)


def only_changed(factory: TimelineFactory, mark: int) -> set[str]:
    names = {f"GPIO{getattr(PINS, name)}": name for name in OUTPUTS}
    return {names[c.pin] for c in factory.since(mark)}


def test_wait_blinks_amber_at_one_hertz(factory, lights) -> None:
    mark = factory.mark()
    shown = time.monotonic()
    lights.show("wait")
    assert wait_until(lambda: lit_count(factory, mark, "main_amber") >= 3)
    running = factory.mark()
    lights.show("idle")
    amber = factory.since(mark, PINS.main_amber)
    assert amber[0].state
    # Lit at once: a first dark phase could not end before 0.5 s; this bound only allows for
    # a blink thread that starts late.
    assert amber[0].t - shown < 0.5 - 0.05
    assert not amber[-1].state  # dark after idle
    on, off = phases(factory.since(mark, PINS.main_amber, until=running))
    assert len(on) >= 2
    assert len(off) >= 2
    assert min(on + off) >= 0.5 - EARLY  # on 0.5 s, off 0.5 s
    assert min(on) < 0.5 + LATE
    assert min(off) < 0.5 + LATE
    assert only_changed(factory, mark) == {"main_amber"}


def test_isolate_flashes_the_beacon_and_beeps_three_times(factory, lights) -> None:
    mark = factory.mark()
    lights.show("isolate")
    buzzer_pin, beacon_pin = PINS.buzzer, PINS.isolation_beacon

    def beeps_done() -> bool:
        buzz = factory.since(mark, buzzer_pin)
        return len(buzz) >= 6 and not buzz[-1].state

    assert wait_until(beeps_done)
    last_beep = factory.since(mark, buzzer_pin)[-1].t
    # The beacon's own rhythm as the clock: two more flashes after the last beep is longer
    # than one beep cycle (0.5 s) on any machine, so a fourth beep would have begun.
    assert wait_until(
        lambda: sum(1 for c in factory.since(mark, beacon_pin) if c.state and c.t > last_beep) >= 2
    )
    running = factory.mark()
    buzz = factory.since(mark, buzzer_pin)
    assert [c.state for c in buzz] == [True, False] * 3  # three beeps, then silence
    beep_on, beep_off = phases(buzz)
    assert min(beep_on) >= 0.2 - EARLY
    assert min(beep_off) >= 0.3 - EARLY
    assert min(beep_on) < 0.2 + LATE
    beacon = factory.since(mark, beacon_pin, until=running)
    assert beacon[0].state
    flash_on, flash_off = phases(beacon)
    assert len(flash_on) >= 3  # still flashing after the beeps
    assert min(flash_on + flash_off) >= 0.25 - EARLY  # 2 Hz
    assert min(flash_on) < 0.25 + LATE
    assert [c.state for c in factory.since(mark, PINS.main_red)] == [True]  # steady red
    assert only_changed(factory, mark) == {"main_red", "isolation_beacon", "buzzer"}
    lights.show("idle")
    assert not any(levels(factory).values())


def test_fault_blinks_amber_fast_and_nothing_else(factory, lights) -> None:
    mark = factory.mark()
    lights.show("fault")
    assert wait_until(lambda: lit_count(factory, mark, "main_amber") >= 4)
    running = factory.mark()
    on, off = phases(factory.since(mark, PINS.main_amber, until=running))
    assert len(on) >= 3
    assert min(on + off) >= 0.125 - EARLY
    # 4 Hz, not the wait state's 1 Hz: a slow blink's phases never last under 0.5 s.
    assert min(on) < 0.125 + LATE
    assert min(off) < 0.125 + LATE
    assert only_changed(factory, mark) == {"main_amber"}
    assert lights.snapshot()["main"] == "fault"


# Outputs each station state may light (for "go", over every lane).
ALLOWED = [
    {"main_green"},
    {"green_lane"},
    {"main_amber"},
    {"main_red"},
    {"main_red", "isolation_beacon", "buzzer"},
]


def test_no_two_states_ever_show_at_once_across_transitions(factory, lights) -> None:
    sequence = [
        ("go", "main"),
        ("isolate", None),
        ("go", "green"),
        ("isolate", None),
        ("wait", None),
        ("isolate", None),
        ("go", "single"),
        ("fault", None),
        ("go", "green"),
    ]
    names = {f"GPIO{getattr(PINS, name)}": name for name in OUTPUTS}
    mark = factory.mark()
    for state, lane in sequence:
        before = factory.mark()
        lights.show(state, lane)  # type: ignore[arg-type]
        # Let each state's blinking outputs light before the next change.
        for name, want in lights.expected_outputs().items():
            if want is None:
                assert wait_until(lambda n=name, m=before: lit_count(factory, m, n) >= 1)
    lit: set[str] = set()
    seen_lit: set[str] = set()
    for change in factory.since(mark):
        name = names[change.pin]
        (lit.add if change.state else lit.discard)(name)
        seen_lit |= lit
        assert any(lit <= allowed for allowed in ALLOWED), f"{sorted(lit)} lit together"
        assert not (lit & GREEN_OUTPUTS and "isolation_beacon" in lit)
    assert {"main_green", "green_lane", "isolation_beacon", "main_amber"} <= seen_lit


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
