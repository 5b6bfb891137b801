"""The kiosk's resident flow: an explicit state machine with a failsafe state.

Plain Python, no Kivy: the screens (``kiosk_ui.screens.app``) only draw the :class:`View` this
machine publishes and forward touches; the drills (``kiosk_ui.drills.runner``) drive the same
machine without a window. Every change of state goes through :meth:`KioskFlow._enter`,
which checks it against :data:`TRANSITIONS`; a transition the table does not allow is a bug,
and the machine goes to :attr:`State.FAULT` (lights on "fault", staff called) instead of
showing anything it is not sure of. So does any error it did not expect.

The flow of one resident::

    IDLE --code--> MEASURING --reading--> (REMEASURE --reading-->) check-in
      ^                |  thermometer fault --> MANUAL_TEMPERATURE (staff type it)
      |                v
      +--timeout-- RESULT | WAIT | ISOLATION | STAFF

A check-in is committed (``Station.check_in``) before the screen or the lights say
anything about it. Long work (a measurement) runs on a worker the caller owns; the machine
only asks for it (``measure``) and hears back through :meth:`reading` or
:meth:`sensor_fault`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from edge_agent.errors import StorageError
from firmware.errors import StationError
from kiosk_ui.core import messages, rules
from kiosk_ui.core.rules import (
    Decision,
    Lane,
    TemperatureAssessment,
    Thresholds,
    TubeMode,
    VerdictLike,
)
from kiosk_ui.errors import RuleViolation

if TYPE_CHECKING:  # the names only: firmware.lights drives GPIO through gpiozero
    from firmware.lights import State as LightState

log = logging.getLogger(__name__)


class State(Enum):
    IDLE = "idle"
    MEASURING = "measuring"
    REMEASURE = "remeasure"
    MANUAL_TEMPERATURE = "manual_temperature"
    RESULT = "result"
    WAIT = "wait"
    ISOLATION = "isolation"
    STAFF = "staff"
    FAULT = "fault"


class FaultKind(StrEnum):
    CAMERA = "camera"
    THERMOMETER = "thermometer"
    STORAGE = "storage"
    INTERNAL = "internal"


_SHOWING = frozenset({State.RESULT, State.WAIT, State.ISOLATION, State.STAFF})
_MEASURE = frozenset({State.MEASURING, State.REMEASURE, State.MANUAL_TEMPERATURE})
FAULTS_TO_LATCH = 2
SENSOR_FAULT = "sensor_fault"  # the alert kind of a thermometer or camera that fails
CLOCK_UNTRUSTED = "clock_untrusted"  # the alert kind, and the reason a resident sees staff
ABANDON_S = 90.0  # a temperature check nobody finishes gives way to the next resident

# States in which the next resident may show a code (a result on screen does not block).
_READY = frozenset({State.IDLE} | _SHOWING)

# Which state may follow which. FAULT may follow any state (the failsafe) and is not listed.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.IDLE, State.MEASURING, State.MANUAL_TEMPERATURE} | _SHOWING),
    State.MEASURING: frozenset(_MEASURE | _SHOWING | {State.IDLE}),
    State.REMEASURE: frozenset(_MEASURE | _SHOWING | {State.IDLE}),
    State.MANUAL_TEMPERATURE: frozenset(_MEASURE | _SHOWING | {State.IDLE}),
    State.RESULT: frozenset(_SHOWING | {State.IDLE, State.MEASURING, State.MANUAL_TEMPERATURE}),
    State.WAIT: frozenset(_SHOWING | {State.IDLE, State.MEASURING, State.MANUAL_TEMPERATURE}),
    State.ISOLATION: frozenset(_SHOWING | {State.IDLE, State.MEASURING, State.MANUAL_TEMPERATURE}),
    State.STAFF: frozenset(_SHOWING | {State.IDLE, State.MEASURING, State.MANUAL_TEMPERATURE}),
    State.FAULT: frozenset({State.IDLE, State.FAULT}),
}


class CheckinLike(Protocol):
    @property
    def resident(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def decision(self) -> Decision: ...
    @property
    def lane(self) -> Lane: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def temperature_c(self) -> float | None: ...
    @property
    def tube(self) -> str | None: ...
    @property
    def position(self) -> int | None: ...
    @property
    def capacity(self) -> int | None: ...
    @property
    def waiting(self) -> bool: ...
    @property
    def queue_place(self) -> int | None: ...


class TubeLike(Protocol):
    @property
    def tube(self) -> str: ...
    @property
    def members(self) -> tuple[str, ...]: ...
    @property
    def capacity(self) -> int: ...


class StationPort(Protocol):
    """The part of ``kiosk_ui.core.station.Station`` the flow uses."""

    def verify(self, text: str) -> VerdictLike: ...
    def needs_temperature(self, verdict: VerdictLike) -> bool: ...
    def assess(self, readings: Sequence[float]) -> TemperatureAssessment: ...
    def check_in(self, verdict: VerdictLike, readings: Sequence[float] = ()) -> CheckinLike: ...
    def check_in_manual(  # the flow names no one and no group: staff typed an ID number
        self, sub: str, color: str, *, staff: str, readings: Sequence[float] = ()
    ) -> CheckinLike: ...
    def open_tube(self, mode: TubeMode = ...) -> TubeLike | None: ...
    def thresholds(self) -> Thresholds: ...
    def raise_alert(self, kind: str, detail: str, *, device: str | None = None) -> object: ...
    def clear_alert(self, kind: str, detail: str, *, device: str | None = None) -> object: ...


@dataclass(frozen=True)
class View:
    """Everything a screen needs to draw one moment of the flow."""

    state: State
    since: float
    decision: Decision | None = None
    lane: Lane | None = None
    reason: str | None = None
    name: str | None = None
    resident: str | None = None
    temperature_c: float | None = None
    tube: str | None = None
    position: int | None = None
    capacity: int | None = None
    queue_place: int | None = None
    tube_full: bool = False
    prompt: str | None = None  # i18n key of the line under the title
    message_en: str | None = None  # a rule's or fault's own words
    message_zh: str | None = None
    fault: FaultKind | None = None
    light: LightState = "idle"  # the station state the lane lights show (firmware.lights)
    light_lane: str | None = None

    def message(self, language: str) -> str | None:
        return self.message_zh if language == "zh" else self.message_en


@dataclass
class _Pending:
    """The resident being served: a verified code, or one staff identified by hand."""

    verdict: VerdictLike | None = None
    manual_sub: str | None = None
    manual_color: str = "green"
    staff: str | None = None
    readings: list[float] = field(default_factory=list)


def light_for(view: View) -> tuple[LightState, str | None]:
    """What the lane lights show for a view (``LaneLights.show(state, lane)``).

    Colour is for those who see it from afar; the screen always says it in words too.
    The isolation state also sounds the buzzer.
    """
    s = view.state
    if s in _MEASURE or s is State.WAIT:
        return "wait", None
    if s is State.RESULT:
        return "go", view.lane
    if s is State.ISOLATION:
        return "isolate", None
    if s is State.STAFF:
        return "stop", None
    if s is State.FAULT:
        return "fault", None
    return "idle", None


class KioskFlow:
    """The resident flow. Call its methods from one thread (the UI thread)."""

    def __init__(
        self,
        station: StationPort,
        *,
        result_timeout_s: float = 6.0,
        measure: Callable[[], None] = lambda: None,
        on_view: Callable[[View], None] = lambda v: None,
        set_lights: Callable[[LightState, str | None], None] = lambda state, lane: None,
        speak: Callable[[View], None] = lambda v: None,
        clock: Callable[[], float] = time.monotonic,
        abandon_s: float = ABANDON_S,
    ) -> None:
        self.station = station
        self.result_timeout_s = result_timeout_s
        self._measure = measure
        self._on_view = on_view
        self._set_lights = set_lights
        self._speak = speak
        self.clock = clock
        self._pending: _Pending | None = None
        self._last_code: str | None = None
        self.thermometer_faulty = False
        self.sensor_faults = 0
        self.abandon_s = abandon_s
        self.camera_faulty = False
        self.clock_problem: str | None = None  # why the station's clock is not trusted
        self.view = View(State.IDLE, since=clock())
        self.history: list[State] = [State.IDLE]
        self.last_result: Any = None

    @property
    def state(self) -> State:
        return self.view.state

    def start(self) -> None:
        """Publish the first view and set the lights (call once the screens exist)."""
        self._publish(self.view)

    # -- events ---------------------------------------------------------------------------

    def code_read(self, text: str) -> None:
        """The decoder read ``text`` from a camera frame."""
        if self.state not in _READY:
            log.debug("code ignored in %s", self.state)
            return
        if self.state in _SHOWING and text == self._last_code:
            # The resident still holds the code up while reading the result: not a new visit.
            return
        self._last_code = text
        self._guard(self._code_read, text)

    def _code_read(self, text: str) -> None:
        if self.clock_problem is not None:
            # A code checked against a wrong clock looks expired or not yet valid: staff
            # check the resident in by hand (``manual_id``) until the clock is trusted.
            self._enter(replace(self._fresh(State.STAFF), reason=CLOCK_UNTRUSTED))
            return
        try:
            verdict = self.station.verify(text)
        except RuleViolation as exc:
            self._violation(exc)
            return
        self._pending = _Pending(verdict=verdict)
        if self.station.needs_temperature(verdict):
            self._ask_temperature(State.MEASURING, "measure.closer")
        else:
            self._check_in()

    def manual_id(self, sub: str, staff: str, color: str = "green") -> None:
        """Staff identified a resident without a code by the national ID number.

        ``sub`` is derived from the number by the caller (``national_id.derive_sub`` with
        the station's key); the number itself never reaches the flow. The decision table
        applies as for a code of ``color`` (green unless staff chose otherwise).
        """
        if self.state not in _READY:
            raise messages.violation(messages.KIOSK_BUSY)
        self._guard(self._manual_id, sub, staff, color)

    def _manual_id(self, sub: str, staff: str, color: str) -> None:
        self._pending = _Pending(manual_sub=sub, manual_color=color, staff=staff)
        if color == "red":
            self._check_in()
        else:
            self._ask_temperature(State.MEASURING, "measure.closer")

    def reading(self, celsius: float) -> None:
        """The thermometer measured ``celsius`` (calibration offset applied)."""
        if self.state not in _MEASURE or self._pending is None:
            log.debug("reading %.1f ignored in %s", celsius, self.state)
            return
        self._thermometer_recovered()
        self._guard(self._reading, celsius)

    def manual_temperature(self, celsius: float) -> None:
        """Staff typed the temperature they took by hand."""
        if self.state not in _MEASURE or self._pending is None:
            log.debug("hand reading %.1f ignored in %s", celsius, self.state)
            return
        self._guard(self._reading, celsius)

    def _reading(self, celsius: float) -> None:
        assert self._pending is not None
        self._pending.readings.append(float(celsius))
        assessment = self.station.assess(self._pending.readings)
        if assessment.done:
            self._check_in()
            return
        if self._pending.readings[-1] >= self.station.thresholds().fever_threshold_c:
            self._ask_temperature(State.REMEASURE, "measure.again_why")
        else:
            self._ask_temperature(State.MEASURING, "measure.retry")

    def sensor_fault(self, detail: str) -> None:
        """The thermometer did not deliver: staff take the temperature by hand."""
        if self.state not in _MEASURE:
            return
        log.warning("thermometer fault: %s", detail)
        # One failed measurement may be a resident who did not step up; two in a row is
        # the sensor: then the next residents go straight to the hand reading.
        self.sensor_faults += 1
        if not self.thermometer_faulty and self.sensor_faults >= FAULTS_TO_LATCH:
            self.thermometer_faulty = True
            self._standing(
                lambda: self.station.raise_alert(SENSOR_FAULT, detail, device="thermometer")
            )
        self._guard(
            self._enter,
            replace(
                self._fresh(State.MANUAL_TEMPERATURE),
                prompt="fault.thermometer",
                fault=FaultKind.THERMOMETER,
                message_en=detail,
                message_zh=detail,
            ),
        )

    def thermometer_ok(self) -> None:
        """The sensor answers again (a probe or staff said so): measure the next resident."""
        self._thermometer_recovered()

    def _thermometer_recovered(self) -> None:
        self.sensor_faults = 0
        if self.thermometer_faulty:
            self.thermometer_faulty = False
            self._standing(
                lambda: self.station.clear_alert(
                    SENSOR_FAULT, "the thermometer measures again", device="thermometer"
                )
            )

    def _standing(self, record: Callable[[], object]) -> None:
        """Record a standing alert's start or end; a store that cannot is logged, not shown:
        the screen already says what is wrong, and the next write shows a storage fault."""
        try:
            record()
        except StorageError as exc:
            log.error("alert not recorded: %s", exc)

    def clock_judged(self, trusted: bool, detail: str) -> None:
        """The clock judge's latest word (``kiosk_ui.core.clock``): while the clock is not
        trusted no code is verified, and a standing ``clock_untrusted`` alert says why."""
        if not trusted and self.clock_problem is None:
            log.warning("clock not trusted: %s", detail)
            self._standing(lambda: self.station.raise_alert(CLOCK_UNTRUSTED, detail))
        elif trusted and self.clock_problem is not None:
            log.info("clock trusted again: %s", detail)
            self._standing(lambda: self.station.clear_alert(CLOCK_UNTRUSTED, detail))
        self.clock_problem = None if trusted else detail

    def camera_fault(self, detail: str) -> None:
        """No frames come from the camera: nobody can check in by code until it is back."""
        self.camera_faulty = True
        log.error("camera fault: %s", detail)
        self._standing(lambda: self.station.raise_alert(SENSOR_FAULT, detail, device="camera"))
        self._fault(FaultKind.CAMERA, detail)

    def camera_ok(self) -> None:
        if self.camera_faulty:
            self._standing(
                lambda: self.station.clear_alert(
                    SENSOR_FAULT, "the camera delivers frames again", device="camera"
                )
            )
        self.camera_faulty = False
        if self.state is State.FAULT and self.view.fault is FaultKind.CAMERA:
            self._guard(self._enter, self._fresh(State.IDLE))

    def tubes_changed(self) -> None:
        """A tube opened, was sealed or lost a member: a waiting resident may have a place."""
        if self.state is not State.WAIT or self.view.resident is None:
            return
        self._guard(self._recheck_wait)

    def _recheck_wait(self) -> None:
        mode = TubeMode.SINGLE if self.view.decision is Decision.SINGLE else TubeMode.POOL
        tube = self.station.open_tube(mode)
        who = self.view.resident
        if tube is None or who not in tube.members:
            return
        position = tube.members.index(who) + 1
        self._enter(
            replace(
                self.view,
                state=State.RESULT,
                since=self.clock(),
                tube=tube.tube,
                position=position,
                capacity=tube.capacity,
                queue_place=None,
                prompt="result.go" if mode is TubeMode.POOL else "result.single",
            )
        )

    def tick(self) -> None:
        """Time passes: a result shown long enough gives way to the next resident, and a
        resident who walked away during the temperature check is given up (nothing was
        recorded for them)."""
        waited = self.clock() - self.view.since
        if self.state in _SHOWING and waited >= self.result_timeout_s:
            self._guard(self._enter, self._fresh(State.IDLE))
        elif self.state in _MEASURE and waited >= self.abandon_s:
            log.info("nobody finished the temperature check within %.0f s", self.abandon_s)
            self._pending = None
            self._guard(self._enter, self._fresh(State.IDLE))

    def reset(self) -> None:
        """Staff cleared a fault or a stuck resident."""
        self._pending = None
        if self.camera_faulty:
            self._fault(FaultKind.CAMERA, "the camera still delivers no frames")
            return
        self._enter(self._fresh(State.IDLE))

    def storage_fault(self, detail: str) -> None:
        self._fault(FaultKind.STORAGE, detail)

    # -- internals ------------------------------------------------------------------------

    def _fresh(self, state: State) -> View:
        return View(state, since=self.clock())

    def _ask_temperature(self, state: State, prompt: str) -> None:
        if self.thermometer_faulty:
            self._enter(replace(self._fresh(State.MANUAL_TEMPERATURE), prompt="fault.thermometer"))
            return
        self._enter(replace(self._fresh(state), prompt=prompt))
        self._measure()

    def _check_in(self) -> None:
        p = self._pending
        assert p is not None
        if p.manual_sub is not None:
            assert p.staff is not None
            result = self.station.check_in_manual(
                p.manual_sub, p.manual_color, staff=p.staff, readings=p.readings
            )
        else:
            assert p.verdict is not None
            result = self.station.check_in(p.verdict, p.readings)
        self._pending = None
        self.last_result = result
        self._enter(self._result_view(result))

    def _result_view(self, r: CheckinLike) -> View:
        decision = Decision(r.decision)
        base = View(
            State.RESULT,
            since=self.clock(),
            decision=decision,
            lane=Lane(r.lane),
            reason=r.reason,
            name=r.name,
            resident=r.resident,
            temperature_c=r.temperature_c,
            tube=r.tube,
            position=r.position,
            capacity=r.capacity,
            queue_place=r.queue_place,
        )
        recalled = r.reason in rules.RECALL_REASONS
        if decision is Decision.ISOLATE:
            prompt = "isolation.red" if r.reason == rules.RED_CODE else "isolation.fever"
            if recalled:
                prompt = "isolation.recall"
            return replace(base, state=State.ISOLATION, prompt=prompt)
        if decision is Decision.REFER:
            return replace(base, state=State.STAFF, prompt=f"reason.{r.reason}")
        if r.waiting:
            mode = TubeMode.SINGLE if decision is Decision.SINGLE else TubeMode.POOL
            tube = self.station.open_tube(mode)
            full = tube is not None
            return replace(
                base,
                state=State.WAIT,
                tube_full=full,
                prompt="wait.full" if full else "wait.no_tube",
            )
        single = decision is Decision.SINGLE
        if single and recalled:
            return replace(base, prompt="result.recall")
        return replace(base, prompt="result.single" if single else "result.go")

    def _violation(self, exc: RuleViolation) -> None:
        self._pending = None
        self._enter(
            replace(
                self._fresh(State.STAFF),
                reason=exc.code,
                message_en=exc.en,
                message_zh=exc.zh,
            )
        )

    def _fault(self, kind: FaultKind, detail: str) -> None:
        self._pending = None
        view = replace(
            self._fresh(State.FAULT),
            fault=kind,
            prompt=f"fault.{kind.value}",
            message_en=detail,
            message_zh=detail,
        )
        self._publish(view)

    def _enter(self, view: View) -> None:
        allowed = TRANSITIONS.get(self.state, frozenset())
        if view.state is not State.FAULT and view.state not in allowed:
            log.error("no transition %s -> %s", self.state, view.state)
            self._fault(FaultKind.INTERNAL, f"no transition {self.state} -> {view.state}")
            return
        self._publish(view)

    def _publish(self, view: View) -> None:
        light, lane = light_for(view)
        view = replace(view, light=light, light_lane=lane)
        self.view = view
        self.history.append(view.state)
        del self.history[:-200]
        try:
            self._set_lights(view.light, view.light_lane)
        except StationError as exc:
            log.error("lights: %s", exc)
        self._on_view(view)
        if view.state in _SHOWING or view.state is State.REMEASURE:
            self._speak(view)

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        """Run one transition; anything unexpected ends in the failsafe state."""
        try:
            fn(*args)
        except RuleViolation as exc:
            self._violation(exc)
        except StorageError as exc:
            # A read that fails is as much a storage fault as a write that did not commit
            # (the station raises StorageError for both).
            log.error("storage: %s", exc)
            self._fault(FaultKind.STORAGE, str(exc))
        except Exception as exc:
            # The failsafe: a kiosk that guesses is worse than one that calls the staff.
            log.exception("kiosk flow failed in %s", self.state)
            self._fault(FaultKind.INTERNAL, f"{type(exc).__name__}: {exc}")
