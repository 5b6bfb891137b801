"""The kiosk's composition root: station, devices, flow and workers, without any window.

``build(config, hardware=...)`` wires one kiosk and its core loop (a :class:`KioskCore`);
``station kiosk`` puts the Kivy screens on top of it (``kiosk_ui.screens.running``),
``station simulate`` drives it with a drill, the kiosk benchmark measures it, and the tests
do all three. Threads and what they own:

- the core loop (:class:`~kiosk_ui.workers.LoopThread`) runs the flow, the station's rules
  and every commit, and ticks the flow's timeouts;
- the decode worker (``firmware.qr.DecodeWorker``) reads camera frames and decodes them;
- the measure worker (:class:`~kiosk_ui.workers.MeasureWorker`) runs thermometer
  measurements on request;
- the scanner's own reader delivers tube and box barcodes.

None of the workers touches the flow or the station's read models: each result goes to the
core loop through ``post``, and the flow runs only there. The screens draw what the core
publishes and post touches to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

from edge_agent import damage, outbox
from firmware.camera import Frame
from firmware.config import StationConfig
from firmware.errors import CameraError, StationError
from firmware.hardware import Hardware, build_hardware
from kiosk_ui.clock_sources import (
    ClockWatch,
    SimClock,
    build_judge,
    panel_words,
    recorded_gateway_time,
)
from kiosk_ui.core import messages, national_id
from kiosk_ui.core.checkins import Verifier
from kiosk_ui.core.clock import ClockJudge
from kiosk_ui.core.codes import CodeVerifier, TrustStore
from kiosk_ui.core.flow import KioskFlow, State, View
from kiosk_ui.core.i18n import t
from kiosk_ui.core.rules import RECALL_REASONS, TubeMode
from kiosk_ui.core.staff_lock import StaffLock, load_secret_hashes
from kiosk_ui.core.station import Station
from kiosk_ui.core.tubes import DispatchResult, ScanResult, TubeResult
from kiosk_ui.errors import RuleViolation
from kiosk_ui.panel import LinkStatus, PanelData, PanelMessage
from kiosk_ui.workers import (
    MEASURE_TIMEOUT_S,
    LoopThread,
    MeasureWorker,
    Post,
    PreviewTap,
)

log = logging.getLogger(__name__)

PROBE_EVERY_S = 5.0
DRILL_SAMPLER = "drill"
ScanOutcome = ScanResult | RuleViolation | StationError


class Speaker(Protocol):
    def say(self, view: View, language: str) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


RECALL_STATES = (State.RESULT, State.WAIT, State.ISOLATION)


class Kiosk:
    """One kiosk: station + devices + flow + workers. Actions run on the core thread."""

    def __init__(
        self,
        config: StationConfig,
        station: Station,
        hardware: Hardware,
        post: Post,
        *,
        speaker: Speaker | None = None,
        measure_timeout_s: float = MEASURE_TIMEOUT_S,
        clock_judge: ClockJudge | None = None,
        sim_clock: SimClock | None = None,
    ) -> None:
        self.config = config
        self.station = station
        self.hardware = hardware
        self.post = post
        self.speaker = speaker
        self.language: str = config.kiosk.language
        self.views: list[Callable[[View], None]] = []
        self.panel_listeners: list[Callable[[], None]] = []
        self.panel_message: PanelMessage | None = None
        self.arm_single = False
        self.lock = StaffLock(
            load_secret_hashes(config.kiosk.staff_pin_file), config.kiosk.staff_lock_s
        )
        self.flow = KioskFlow(
            station,
            result_timeout_s=config.kiosk.result_timeout_s,
            measure=self._request_measure,
            on_view=self._view,
            set_lights=hardware.lights.show,
            speak=self._speak,
        )
        self.measure = MeasureWorker(
            hardware.thermometer,
            on_reading=lambda t: post(lambda: self.flow.reading(t)),
            on_fault=lambda m: post(lambda: self.flow.sensor_fault(m)),
            timeout_s=measure_timeout_s,
            on_ok=lambda: post(self.flow.thermometer_ok),
        )
        self._last_probe = 0.0
        if not isinstance(hardware.camera, PreviewTap):
            hardware.camera = PreviewTap(hardware.camera)
        self._tap: PreviewTap = hardware.camera
        self.decoder = hardware.decode_worker(
            self._payload, on_fault=self._camera_fault, on_recover=self._camera_ok
        )
        self.codes_read = 0
        self.last_scan: ScanOutcome | None = None  # the scanner's last result, or its error
        self._id_key: bytes | None = None
        self.sim_clock = sim_clock  # the clock a drill sets, on the simulated backend
        self.clock_watch = ClockWatch(clock_judge) if clock_judge is not None else None

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self.judge_clock()
        self.flow.start()
        self.measure.start()
        self.decoder.start()
        self.hardware.scanner.start(lambda text: self.post(lambda: self._scanned(text)))

    def stop(self) -> None:
        try:
            self.hardware.scanner.stop()
        finally:
            try:
                self.decoder.stop()
            finally:
                try:
                    self.measure.stop()
                finally:
                    if self.speaker is not None:
                        self.speaker.stop()

    def close(self) -> None:
        self.stop()
        self.hardware.close()
        self.station.close()

    def tick(self) -> None:
        """On the core thread, a few times a second: the flow's timeouts, and while the
        thermometer is taken for faulty, a probe every few seconds to notice it is back."""
        self.flow.tick()
        now = time.monotonic()
        if self.clock_watch is not None and self.clock_watch.due(now):
            self.judge_clock()
        if self.flow.thermometer_faulty and now - self._last_probe >= PROBE_EVERY_S:
            self._last_probe = now
            self.measure.probe()

    def judge_clock(self) -> None:
        """Ask the clock judge (core thread); the flow and the panel hear when trust changes."""
        if self.clock_watch is None:
            return
        j, changed = self.clock_watch.look()
        self.flow.clock_judged(j.trusted, j.detail)
        if changed:
            self.panel_message = PanelMessage(j.trusted, *panel_words(j))
            for notify in list(self.panel_listeners):
                notify()

    # -- from the workers (any thread) ----------------------------------------------------

    def _payload(self, text: str) -> None:
        self.post(lambda: self._code(text))

    def _code(self, text: str) -> None:
        self.codes_read += 1
        self.flow.code_read(text)

    def _camera_fault(self, exc: CameraError) -> None:
        self.post(lambda: self.flow.camera_fault(str(exc)))

    def _camera_ok(self) -> None:
        self.post(self.flow.camera_ok)

    def _request_measure(self) -> None:
        self.measure.request()

    def _view(self, view: View) -> None:
        if view.state is State.IDLE:
            self.decoder.forget()
        if view.reason in RECALL_REASONS and view.state in RECALL_STATES:
            # The sampler panel says why this resident is not pooled (docs/sampler-guide.md).
            key = f"recall.{view.reason}"
            self.panel_message = PanelMessage(False, t(key, "en"), t(key, "zh"))
            for notify in list(self.panel_listeners):
                notify()
        for listener in list(self.views):
            listener(view)

    def _speak(self, view: View) -> None:
        if self.speaker is not None:
            self.speaker.say(view, self.language)

    # -- the sampler's actions (UI thread) ------------------------------------------------

    @property
    def sampler(self) -> str:
        return self.lock.who or DRILL_SAMPLER

    def _done(self, en: str, zh: str) -> None:
        self.panel_message = PanelMessage(True, en, zh)
        self.lock.touch()
        self.flow.tubes_changed()
        for listener in list(self.panel_listeners):
            listener()

    def _refused(self, exc: RuleViolation) -> None:
        self.panel_message = PanelMessage(False, exc.en, exc.zh)
        for listener in list(self.panel_listeners):
            listener()

    def act(self, action: Callable[[], object]) -> bool:
        """Run a sampler's action from the panel: a refusal becomes the panel's message, a
        storage failure the flow's fault. False (and nothing run) while the panel is locked."""
        if not self.lock.unlocked:
            return False
        try:
            action()
        except RuleViolation as exc:
            self._refused(exc)
        except StationError as exc:
            self.flow.storage_fault(str(exc))
        return True

    def scan(self, text: str) -> ScanResult:
        """A tube or box barcode from the scanner (or a staff badge, which unlocks)."""
        mode = TubeMode.SINGLE if self._single_scan() else TubeMode.POOL
        result = self.station.scan(text, self.sampler, mode)
        self.arm_single = False
        if result.tube is not None:
            what = "单采" if mode is TubeMode.SINGLE else "混采"
            self._done(
                f"Tube {result.tube.tube} opened ({result.tube.mode}).",
                f"试管 {result.tube.tube} 已打开（{what}）。",
            )
        elif result.box is not None:
            self._done(
                f"Box {result.box}: {len(result.ready)} sealed tubes ready.",
                f"转运箱 {result.box}：{len(result.ready)} 支已封管试管待装。",
            )
        return result

    def _single_scan(self) -> bool:
        """A tube scan opens a single-sample tube when armed on the panel, or when a
        yellow-code resident waits and a pooled tube is already open."""
        if self.arm_single:
            return True
        if self.station.open_tube(TubeMode.SINGLE) is not None:
            return False
        return bool(self.station.waiting(TubeMode.SINGLE)) and (
            self.station.open_tube(TubeMode.POOL) is not None
        )

    def forget_last_scan(self) -> None:
        """Forget the scanner's last result (a drill does, before it scans)."""
        self.last_scan = None

    def _scanned(self, text: str) -> None:
        if not self.lock.unlocked and self.lock.unlock(text, who="badge"):
            self._done("Panel unlocked by badge.", "工牌已解锁面板。")
            return
        try:
            self.last_scan = self.scan(text)
        except RuleViolation as exc:
            self.last_scan = exc
            self._refused(exc)
        except StationError as exc:
            self.last_scan = exc
            self.flow.storage_fault(str(exc))

    def seal(self, tube: str | None = None) -> TubeResult:
        result = self.station.seal(self.sampler, tube)
        self._done(
            f"Tube {result.tube.tube} sealed with {result.tube.count}.",
            f"试管 {result.tube.tube} 已封管，共 {result.tube.count} 人。",
        )
        return result

    def void(self, reason: str, tube: str | None = None) -> TubeResult:
        result = self.station.void(reason, self.sampler, tube)
        self._done(
            f"Tube {result.tube.tube} voided: its members check in again.",
            f"试管 {result.tube.tube} 已作废：成员需重新登记。",
        )
        return result

    def remove(self, resident: str, reason: str = "removed by sampler") -> TubeResult | None:
        result = self.station.remove(resident, reason, self.sampler)
        self._done("Resident removed.", "已移出该居民。")
        return result

    def dispatch(self, box: str | None = None) -> DispatchResult:
        """Send ``box`` with the sealed tubes; without one, the box the scanner read last."""
        if box is None:
            last = self.last_scan
            box = last.box if isinstance(last, ScanResult) else None
            if not box:
                raise messages.violation(messages.SCAN_BOX_FIRST)
        result = self.station.dispatch(box, self.sampler)
        self._done(
            f"Box {result.box} dispatched with {len(result.tubes)} tubes.",
            f"转运箱 {result.box} 已送出，共 {len(result.tubes)} 支试管。",
        )
        return result

    def manual_id(self, number: str, color: str = "green") -> None:
        """Staff typed a national ID number: validate it, derive ``sub``, forget it."""
        national_id.validate(number)
        if self._id_key is None:
            self._id_key = national_id.load_key(self.config.kiosk.id_hash_key_file)
        sub = national_id.derive_sub(number, self._id_key)
        self.flow.manual_id(sub, staff=self.sampler, color=color)
        self.lock.touch()

    def manual_temperature(self, celsius: float) -> None:
        self.flow.manual_temperature(celsius)
        self.lock.touch()

    def set_language(self, language: str) -> None:
        if language in ("zh", "en"):
            self.language = language
            self.flow.start()  # publish the same view again, to redraw in the new language

    # -- what the screens read (core thread) ----------------------------------------------

    def preview_frame(self) -> Frame | None:
        """The camera's latest frame, for the idle screen's preview (any thread)."""
        return self._tap.last_frame

    def link_status(self) -> LinkStatus:
        """The agent's link state and the backlog, as the agent records them."""
        db = self.station.db
        st = outbox.stats(db)
        state = outbox.read_state(db)
        return LinkStatus(
            link=str(state.get("link.state", "unknown")),
            depth=st.depth,
            oldest_s=st.oldest_undelivered_age_s,
            alerts=outbox.standing_alerts(db),
        )

    def panel_data(self) -> PanelData:
        """Everything the sampler panel shows, read from the station and the flow."""
        station = self.station
        tube = station.open_tube()
        return PanelData(
            tube=tube,
            names=tuple(station.member_names(tube.members)) if tube is not None else (),
            counters=station.counters(),
            single_armed=self.arm_single,
            temp_needed=self.flow.state is State.MANUAL_TEMPERATURE,
            fault=self.flow.state is State.FAULT,
            alerts=tuple(station.recent_alerts()),
            message=self.panel_message,
        )


class KioskCore:
    """A kiosk and its core loop (the flow's thread, ticking the flow's timeouts).

    ``start()`` starts the loop and then the kiosk's devices and workers on it; ``stop()``
    stops them on the loop, then the loop, then closes the devices and the station. Also a
    context manager. The screens, the drills and the benchmark all run a kiosk this way.
    """

    def __init__(self, kiosk: Kiosk, loop: LoopThread) -> None:
        self.kiosk = kiosk
        self.loop = loop
        loop.set_tick(kiosk.tick)

    def start(self) -> None:
        self.loop.start()
        try:
            self.loop.call(self.kiosk.start)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop and close everything; safe to call again, and after a failed start."""
        try:
            if self.loop.running:
                # On the loop, so it comes after anything posted there (the flow's start).
                self.loop.call(self.kiosk.stop)
            self.loop.stop()
        finally:
            self.kiosk.close()

    def __enter__(self) -> KioskCore:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


def build(
    config: StationConfig,
    *,
    hardware: Hardware | None = None,
    verifier: Verifier | None = None,
    speaker: Speaker | None = None,
    measure_timeout_s: float = MEASURE_TIMEOUT_S,
) -> KioskCore:
    """The one composition root: the kiosk command, drills, the benchmark and the tests all
    build a kiosk here (``hardware`` and ``verifier`` default to the configuration's)."""
    if verifier is None:
        verifier = CodeVerifier(
            TrustStore.load(config.health_code.trusted_keys), config.health_code.leeway_s
        )
    damage.check_at_start(config.storage.path, config.source)  # before anything opens it
    sim = config.hardware.backend == "sim" or (hardware is not None and hardware.sim is not None)
    sim_clock = SimClock() if sim else None
    station = Station.open(config, verifier, clock=sim_clock.now if sim_clock else time.time)
    try:
        hw = hardware if hardware is not None else build_hardware(config)
        judge = build_judge(
            config,
            lambda: station.ledger.floor,
            sim_clock,
            lambda: recorded_gateway_time(station.db.conn),
        )
    except BaseException:
        station.close()
        raise
    loop = LoopThread()
    kiosk = Kiosk(
        config,
        station,
        hw,
        loop.post,
        speaker=speaker,
        measure_timeout_s=measure_timeout_s,
        clock_judge=judge,
        sim_clock=sim_clock,
    )
    return KioskCore(kiosk, loop)
