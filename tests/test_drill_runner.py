"""The drill runner on its own: a kiosk from the one root on simulated hardware, its core
loop as the drill's UI, a real SQLite database, no agent and no broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware.config import load_config
from kiosk_ui.drills.runner import DrillRunner
from kiosk_ui.drills.scenario import Scenario, parse
from kiosk_ui.errors import StepFailed
from kiosk_ui.kiosk import KioskCore, build
from tests.support.drills import drill_config

T = TypeVar("T")


class LoopUi:
    def __init__(self, core: KioskCore) -> None:
        self.core = core

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        return self.core.loop.call(fn, timeout)

    def screenshot(self, path: Path) -> None:
        raise AssertionError("no screens here")


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[DrillRunner]:
    path = drill_config(tmp_path, "mqtt://127.0.0.1:9")
    config = load_config(path)
    with build(config) as core:
        r = DrillRunner(core.kiosk, LoopUi(core), None, config.storage.path, out=lambda _: None)
        try:
            yield r
        finally:
            r.close()


def drill(*steps: dict[str, Any]) -> Scenario:
    return parse({"name": "test", "steps": list(steps)})


def test_steps_run_through_the_kiosk_and_expectations_hold(runner: DrillRunner) -> None:
    failure = runner.run(
        drill(
            {"scan": "TB2026112300001"},
            {"expect": {"tube": "TB2026112300001", "open_tube_count": 0}},
            {"id": "11010519491231002X", "temperature": 36.5},
            {"expect": {"decision": "pool", "position": 1, "screen": "result"}},
        )
    )
    assert failure is None
    assert runner.last_seq() == 3  # tube opened, check-in recorded, member added


def test_a_refused_scan_fails_its_step_with_the_rules_words(runner: DrillRunner) -> None:
    failure = runner.run(drill({"scan": "TB2026112300001"}, {"scan": "TB2026112300001"}))
    assert isinstance(failure, StepFailed) and failure.index == 1
    assert str(failure).startswith(
        "step 2 (steps[1]) scan TB2026112300001: refused (tube_already_used)"
    )


def test_a_second_scan_reads_its_own_result_not_the_last_one(runner: DrillRunner) -> None:
    """The runner clears the kiosk's last scan on the kiosk's loop before each scan."""
    failure = runner.run(
        drill(
            {"scan": "TB2026112300001"},
            {"scan": "BX20261123A1"},
            {"expect": {"tube": None}},
        )
    )
    assert failure is None
    assert runner.kiosk.last_scan is not None
    assert getattr(runner.kiosk.last_scan, "box", None) == "BX20261123A1"


def test_an_expectation_about_something_the_step_did_not_do_is_named(
    runner: DrillRunner,
) -> None:
    failure = runner.run(drill({"scan": "TB2026112300001"}, {"expect": {"decision": "pool"}}))
    assert failure is not None
    assert str(failure) == (
        "step 2 (steps[1]) expect: 'decision' is not an outcome of the step before "
        "(scan TB2026112300001)"
    )


def test_a_gateway_step_without_a_relay_fails_clearly(runner: DrillRunner) -> None:
    failure = runner.run(drill({"gateway": "offline"}))
    assert failure is not None
    assert str(failure) == "step 1 (steps[0]) gateway offline: this run has no relay to the broker"


def test_a_touch_without_an_open_tube_is_refused(runner: DrillRunner) -> None:
    failure = runner.run(drill({"touch": "seal"}))
    assert failure is not None and "touch seal: refused (no_open_tube)" in str(failure)


def test_step_delay_pauses_after_each_step_that_held(runner: DrillRunner) -> None:
    runner.step_delay = 0.3
    started = time.monotonic()
    assert runner.run(drill({"scan": "TB2026112300001"}, {"wait": 0})) is None
    assert time.monotonic() - started >= 0.6
    runner.step_delay = 5.0
    started = time.monotonic()
    assert runner.run(drill({"scan": "TB2026112300001"})) is not None  # refused: used
    assert time.monotonic() - started < 5.0  # no pause after a failed step
