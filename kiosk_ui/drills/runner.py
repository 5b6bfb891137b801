"""Running a drill's steps against a kiosk on simulated hardware.

The runner drives the simulated devices (camera, thermometer, scan gun) and the kiosk's own
actions, the ones its buttons call, always through the kiosk's core loop (``ui.call``);
it reads what happened from the published views, the kiosk and the station database.
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edge_agent import outbox, recall_list
from edge_agent.db import open_db
from edge_agent.events import EventType
from firmware.errors import StationError
from firmware.hardware import SimDevices
from firmware.thermometer import DEFAULT_ADDRESS
from kiosk_ui.core import national_id
from kiosk_ui.core.flow import State, View
from kiosk_ui.drills.clock import ClockStep
from kiosk_ui.drills.lab import DrillLab
from kiosk_ui.drills.relay import LinkRelay
from kiosk_ui.drills.scenario import (
    Expect,
    Gateway,
    ManualId,
    RecallChange,
    RecallVersion,
    Results,
    Scan,
    Scenario,
    Show,
    Step,
    ThermometerState,
    Touch,
    Wait,
)
from kiosk_ui.errors import RuleViolation, SimulateError, StepFailed
from kiosk_ui.kiosk import PROBE_EVERY_S, Kiosk

T = TypeVar("T")
SETTLE_TIMEOUT_S = 15.0
SETTLED = frozenset(
    {
        State.RESULT,
        State.WAIT,
        State.ISOLATION,
        State.STAFF,
        State.FAULT,
        State.MANUAL_TEMPERATURE,
    }
)
_MISSING = object()


class Ui(Protocol):
    """Where the kiosk's flow runs: ``call`` runs a function there and returns its result."""

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T: ...
    def screenshot(self, path: Path) -> None: ...


class DrillRunner:
    """Runs a scenario's steps against a kiosk on simulated hardware.

    ``step_delay`` pauses after each step that held (to follow a drill in the window);
    ``screenshots`` saves a picture of the screen after each step that acts.
    """

    def __init__(
        self,
        kiosk: Kiosk,
        ui: Ui,
        relay: LinkRelay | None,
        db_path: Path,
        *,
        screenshots: Path | None = None,
        out: Callable[[str], None] = print,
        step_delay: float = 0.0,
    ) -> None:
        if kiosk.hardware.sim is None:
            raise SimulateError("a drill needs simulated hardware (hardware.backend = 'sim')")
        self.kiosk = kiosk
        self.db_path = db_path
        self.sim: SimDevices = kiosk.hardware.sim
        self.ui = ui
        self.relay = relay
        self.screenshots = screenshots
        self.out = out
        self.step_delay = step_delay
        self.outcome: dict[str, Any] = {}
        self.thermometer_attached = True
        self.outcome_of: Step | None = None
        self._db = open_db(db_path)
        self._lab: DrillLab | None = None
        self._lab_dir: tempfile.TemporaryDirectory[str] | None = None
        self._settled = threading.Condition()
        self._settled_n = 0
        self._acts: dict[type[Any], Callable[[int, Any], None]] = {
            Show: self.show,
            ManualId: self.manual_id,
            Scan: self.scan,
            Touch: self.touch,
            Wait: lambda _i, step: time.sleep(step.seconds),
            Gateway: self.gateway,
            ThermometerState: self.thermometer,
            Results: self.results,
            RecallChange: self.recall,
            RecallVersion: self.recall_version,
            ClockStep: self.clock,
        }
        self._readers: dict[str, Callable[[], Any]] = {
            "open_tube_count": self._open_tube_count,
            "lights": kiosk.hardware.lights.snapshot,
            "screen": lambda: ui.call(lambda: kiosk.flow.state.value),
            "alerts": self._alerts_raised,
            "link": self._link,
            "recall_version": lambda: recall_list.version(self._db.conn),
            "clock": lambda: ui.call(
                lambda: "trusted" if kiosk.flow.clock_problem is None else "untrusted"
            ),
        }
        kiosk.views.append(self._on_view)

    def close(self) -> None:
        if self._lab is not None:
            self._lab.close()
        if self._lab_dir is not None:
            self._lab_dir.cleanup()
        self._db.conn.close()

    def _on_view(self, view: View) -> None:
        if view.state in SETTLED:
            with self._settled:
                self._settled_n += 1
                self._settled.notify_all()

    # -- the steps ------------------------------------------------------------------------

    def run(self, scenario: Scenario) -> StepFailed | None:
        """Run every step in order; the first that fails ends the run and is returned."""
        for i, step in enumerate(scenario.steps):
            try:
                self.step(i, step)
            except StepFailed as exc:
                self._shot(i, step, failed=True)
                return exc
            except (RuleViolation, StationError) as exc:
                self._shot(i, step, failed=True)
                return StepFailed(i, step, _why(exc))
            if self.step_delay > 0:
                time.sleep(self.step_delay)
            self._shot(i, step)
        return None

    def _shot(self, i: int, step: Step, failed: bool = False) -> None:
        if self.screenshots is None or isinstance(step, Expect | Wait):
            return
        state = self.ui.call(lambda: self.kiosk.flow.state.value)
        name = f"step-{i + 1:03d}-{state}{'-FAILED' if failed else ''}.png"
        self.ui.screenshot(self.screenshots / name)

    def step(self, i: int, step: Step) -> None:
        if isinstance(step, Expect):
            self.expect(i, step)
            return
        self.outcome = {}
        self.outcome_of = step
        self._acts[type(step)](i, step)

    def clock(self, i: int, step: ClockStep) -> None:
        """Set, jump or synchronise the simulated clock; the kiosk judges it at once."""
        sim_clock = self.kiosk.sim_clock
        if sim_clock is None:
            raise StepFailed(i, step, "this kiosk's clock is not simulated")
        step.apply(sim_clock)
        self.ui.call(self.kiosk.judge_clock)

    def gateway(self, i: int, step: Gateway) -> None:
        if self.relay is None:
            raise StepFailed(i, step, "this run has no relay to the broker")
        if step.online:
            self.relay.restore()
        else:
            self.relay.cut()

    # -- the lab's side: results and the recall list (kiosk_ui.drills.lab) ------------------

    def lab(self) -> DrillLab:
        if self._lab is None:
            self._lab_dir = tempfile.TemporaryDirectory(prefix="drill-lab-")
            station = self.kiosk.config.station
            self._lab = DrillLab(
                self.db_path, Path(self._lab_dir.name), station.township, station.id
            )
        return self._lab

    def results(self, _i: int, step: Results) -> None:
        report = self.lab().results(step.text)
        self.outcome = {"recall_version": recall_list.version(self._db.conn)}
        self.out(f"  results: {report.stored} stored, recall list {report.recall or 'unchanged'}")

    def recall(self, _i: int, step: RecallChange) -> None:
        change: dict[str, Any] = dict(step.change)
        if "id" in change:
            key = national_id.load_key(self.kiosk.config.kiosk.id_hash_key_file)
            change["sub"] = national_id.derive_sub(national_id.validate(change.pop("id")), key)
        change.setdefault("op", "add")
        held = recall_list.version(self._db.conn)
        change["v"] = held + 1
        args = {"township": self.kiosk.config.station.township, "from": held + 1}
        result = self.lab().apply({**args, "through": held + 1, "changes": [change]})
        self.outcome = {"recall_version": result["recall_version"]}

    def recall_version(self, i: int, step: RecallVersion) -> None:
        held = self.lab().wait_version(step.version)
        if held < step.version:
            raise StepFailed(
                i, step, f"the station holds recall version {held}, not {step.version}"
            )
        self.outcome = {"recall_version": held}

    def thermometer(self, i: int, step: ThermometerState) -> None:
        bus = self.sim.thermometer.bus
        self.thermometer_attached = step.ok
        if step.ok:
            bus.attach(DEFAULT_ADDRESS, self.sim.thermometer.device)
            self._wait_thermometer_back(i, step)
        else:
            bus.devices.pop(DEFAULT_ADDRESS, None)

    def _wait_thermometer_back(self, i: int, step: Step) -> None:
        """The kiosk notices by itself (its probe) that the sensor answers again."""
        deadline = time.monotonic() + 2 * PROBE_EVERY_S + 1
        while self.ui.call(lambda: self.kiosk.flow.thermometer_faulty):
            if time.monotonic() > deadline:
                raise StepFailed(i, step, "the kiosk still takes the thermometer for faulty")
            time.sleep(0.1)

    def _wait_settled(self, i: int, step: Step, before: int, what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        with self._settled:
            while self._settled_n <= before:
                left = deadline - time.monotonic()
                if left <= 0:
                    state = self.kiosk.flow.state.value
                    raise StepFailed(
                        i, step, f"{what} within {SETTLE_TIMEOUT_S:.0f} s (screen: {state})"
                    )
                self._settled.wait(left)

    def _settle(self, i: int, step: Show | ManualId) -> None:
        """Wait for the decision; hand readings in while the thermometer is faulty."""
        temps = list(step.temperatures)
        while True:
            with self._settled:
                before = self._settled_n
            state = self.ui.call(lambda: self.kiosk.flow.state)
            if state is not State.MANUAL_TEMPERATURE:
                return
            if self.thermometer_attached and step.temperatures:
                raise StepFailed(i, step, "the kiosk asked for a hand reading of a working sensor")
            if not temps:
                raise StepFailed(
                    i, step, "the thermometer is faulty and the step gives no temperature"
                )
            self.ui.call(functools.partial(self.kiosk.manual_temperature, temps.pop(0)))
            self._wait_settled(i, step, before, "no decision after the hand reading")

    def show(self, i: int, step: Show) -> None:
        cam, thermo = self.sim.camera, self.sim.thermometer
        thermo.clear_queue()
        if step.temperatures:
            thermo.queue(step.temperatures)
        self.kiosk.decoder.forget()
        with self._settled:
            before = self._settled_n
        distort = None
        if step.distort is not None:
            d = step.distort
            distort = {"rotate": d.rotate, "blur": d.blur, "scale": d.scale, "noise": d.noise}
        cam.show(step.text, distort)
        try:
            self._wait_settled(i, step, before, "the kiosk did not decide")
            self._settle(i, step)
        finally:
            cam.clear()
            thermo.clear_queue()
        self._outcome_from_view()

    def manual_id(self, i: int, step: ManualId) -> None:
        thermo = self.sim.thermometer
        thermo.clear_queue()
        if step.temperatures:
            thermo.queue(step.temperatures)
        with self._settled:
            before = self._settled_n
        self.ui.call(lambda: self.kiosk.manual_id(step.number))
        try:
            self._wait_settled(i, step, before, "the kiosk did not decide")
            self._settle(i, step)
        finally:
            thermo.clear_queue()
        self._outcome_from_view()

    def _outcome_from_view(self) -> None:
        v = self.ui.call(lambda: self.kiosk.flow.view)
        self.outcome = {  # plain values, as a drill file writes them
            "decision": None if v.decision is None else v.decision.value,
            "reason": v.reason,
            "lane": None if v.lane is None else v.lane.value,
            "tube": v.tube,
            "position": v.position,
        }

    def scan(self, i: int, step: Scan) -> None:
        self.ui.call(self.kiosk.forget_last_scan)
        got = self.sim.scanner.feed(step.text)
        if got is None:
            raise StepFailed(i, step, "the scanner delivered nothing (too short?)")
        result = self.ui.call(lambda: self.kiosk.last_scan)  # runs after the scan's own post
        if isinstance(result, BaseException):
            raise StepFailed(i, step, _why(result))
        tube = result.tube if result is not None else None
        self.outcome = {"tube": tube.tube if tube is not None else None}

    def touch(self, _i: int, step: Touch) -> None:
        k = self.kiosk
        if step.action == "seal":
            self.outcome = {"tube": self.ui.call(k.seal).tube.tube}
        elif step.action == "void":
            voided = self.ui.call(lambda: k.void(step.reason or ""))
            self.outcome = {"tube": voided.tube.tube}
        elif step.action == "remove":
            resident, reason = step.resident or "", step.reason or "removed by sampler"
            left = self.ui.call(lambda: k.remove(resident, reason))
            self.outcome = {"tube": left.tube.tube if left is not None else None}
        else:
            self.ui.call(lambda: k.dispatch(step.box))

    # -- what an expect reads -------------------------------------------------------------

    def _open_tube_count(self) -> int:
        tube = self.ui.call(self.kiosk.station.open_tube)
        return tube.count if tube is not None else 0

    def _alerts_raised(self) -> int:
        row = self._db.conn.execute(
            "SELECT count(*) FROM outbox WHERE type = ?", (EventType.ALERT_RAISED,)
        ).fetchone()
        return int(row[0])

    def _link(self) -> str:
        # As the panel shows it: connected, or not (lost, or trying again).
        state = outbox.read_state(self._db).get("link.state")
        return "online" if state == "online" else "offline"

    def actual(self, key: str) -> Any:
        reader = self._readers.get(key)
        return reader() if reader is not None else self.outcome.get(key, _MISSING)

    def expect(self, i: int, step: Expect) -> None:
        for key, want in step.checks.items():
            got = self.actual(key)
            if got is _MISSING:
                before = self.outcome_of.describe() if self.outcome_of is not None else "nothing"
                raise StepFailed(
                    i, step, f"{key!r} is not an outcome of the step before ({before})"
                )
            if key == "lights":
                wrong = {lane: got.get(lane) for lane, st in want.items() if got.get(lane) != st}
                if wrong:
                    raise StepFailed(i, step, f"lights {wrong} (expected {want})")
                continue
            if got != want:
                seen = ", ".join(f"{k}={v}" for k, v in self.outcome.items() if v is not None)
                raise StepFailed(
                    i,
                    step,
                    f"{key} was {got!r}, expected {want!r}" + (f" ({seen})" if seen else ""),
                )
        self.out(f"  step {i + 1}: expect {json.dumps(step.checks, ensure_ascii=False)} held")

    # -- delivery -------------------------------------------------------------------------

    def wait_delivered(self, timeout: float) -> tuple[bool, int]:
        """Wait until the agent delivered every event; (done, still undelivered)."""
        deadline = time.monotonic() + timeout
        while True:
            depth = outbox.stats(self._db).depth
            if depth == 0:
                return True, 0
            if time.monotonic() >= deadline:
                return False, depth
            time.sleep(0.1)

    def last_seq(self) -> int:
        """The number of the station's latest event."""
        return outbox.stats(self._db).last_seq


def _why(exc: BaseException) -> str:
    if isinstance(exc, RuleViolation):
        return f"refused ({exc.code}): {exc.en}"
    return str(exc)
