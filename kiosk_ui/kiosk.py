"""The kiosk's composition root: station, devices, flow and workers, without any window.

``build(config, hardware=...)`` wires one kiosk; ``station kiosk`` puts the Kivy screens on
top of it (``kiosk_ui.screens.app``), ``station simulate`` drives it with a drill, and the tests do
both. Threads and what they own:

- the decode worker (``firmware.qr.DecodeWorker``) reads camera frames and decodes them;
- the measure worker (:class:`MeasureWorker`) runs thermometer measurements on request;
- the scanner's own reader delivers tube and box barcodes.

None of them touches the flow or the station's read models: each result goes to the UI
thread through ``post`` (Kivy's ``Clock.schedule_once`` in the app, :class:`LoopThread`
without a window), and the flow runs only there.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from edge_agent import outbox
from firmware.camera import Frame, FrameSource
from firmware.config import StationConfig
from firmware.errors import CameraError, SensorError, StationError
from firmware.hardware import Hardware, build_hardware
from kiosk_ui.core import national_id
from kiosk_ui.core.codes import CodeVerifier, TrustStore
from kiosk_ui.core.flow import KioskFlow, StaffLock, View, load_secret_hashes
from kiosk_ui.core.rules import RuleViolation
from kiosk_ui.core.station import Station, TubeMode

log = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]
MEASURE_TIMEOUT_S = 5.0
PROBE_EVERY_S = 5.0
CORE_STALL_S = 20.0  # see Watchdog
DRILL_SAMPLER = "drill"


def call_on(
    post: Callable[[Callable[[], None]], None], fn: Callable[[], Any], timeout: float, who: str
) -> Any:
    """Run ``fn`` on another thread through ``post`` and wait for its result or exception.

    ``who`` names that thread in the error raised when it does not answer within ``timeout``.
    """
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    post(run)
    if not done.wait(timeout):
        raise StationError(f"{who} did not answer within {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class LoopThread:
    """A UI thread for a kiosk without a window: runs posted calls in order, and ticks."""

    def __init__(self, tick: Callable[[], None] | None = None, tick_s: float = 0.1) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._tick = tick
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ident: int | None = None
        self.max_gap_s = 0.0
        self._busy_since: float | None = None

    def stalled_for(self) -> float:
        """How long the loop has been inside one call (0 while it waits for work); infinite
        when it is not running at all (never started, stopped, or its thread died)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return math.inf
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    def post(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def set_tick(self, tick: Callable[[], None]) -> None:
        """What the loop runs every ``tick_s`` (the flow's timeouts); set before start."""
        self._tick = tick

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the loop and return its result (or raise its exception) here."""
        if threading.get_ident() == self.ident:
            return fn()
        return call_on(self.post, fn, timeout, "the kiosk's UI loop")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kiosk-ui", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise StationError(f"the kiosk's UI loop did not stop within {timeout} s")

    def _run(self) -> None:
        self.ident = threading.get_ident()
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                fn = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                fn = None
            started = time.monotonic()
            self._busy_since = started
            if fn is not None:
                try:
                    fn()
                except Exception:
                    # Posted work reports its own errors; the loop must outlive any of them.
                    log.exception("a call on the kiosk's loop failed")
            elif started >= next_tick:
                if self._tick is not None:
                    self._tick()
                next_tick = started + self._tick_s
            self._busy_since = None
            self.max_gap_s = max(self.max_gap_s, time.monotonic() - started)


class Watchdog:
    """Whether the kiosk may tell systemd it is alive, asked from the UI loop.

    The UI loop calling :meth:`ping` proves the screens answer; the core thread (the flow,
    the rules and every commit) must answer too, or residents would see a screen that never
    moves on. A call on the core may wait for the disk and for the edge agent's write lock
    (SQLite's busy timeout, ``edge_agent.db.BUSY_TIMEOUT_MS``, 10 s) and for a staff PIN's
    hash, so the core counts as stuck only after ``stall_s`` (``CORE_STALL_S``, twice that
    busy timeout) inside one call, or as soon as its thread is gone. Then the pings stop,
    and systemd restarts the kiosk once ``WatchdogSec`` has passed without one.
    """

    def __init__(self, notifier: Any, core: LoopThread, stall_s: float = CORE_STALL_S) -> None:
        self.notifier = notifier
        self.core = core
        self.stall_s = stall_s
        self.withheld = False

    def healthy(self) -> bool:
        return self.core.stalled_for() <= self.stall_s

    def ping(self) -> bool:
        """Send ``WATCHDOG=1`` if the core thread answers; True when sent."""
        if not self.healthy():
            if not self.withheld:
                stalled = self.core.stalled_for()
                log.error(
                    "the kiosk's core thread %s: no more watchdog pings, systemd restarts us",
                    "is gone" if math.isinf(stalled) else f"is stuck for {stalled:.1f} s",
                )
            self.withheld = True
            return False
        if self.withheld:
            log.warning("the kiosk's core thread answers again: watchdog pings resume")
            self.withheld = False
        return bool(self.notifier.watchdog())


class MeasureWorker:
    """Runs one thermometer measurement at a time, on request, off the UI thread."""

    def __init__(
        self,
        thermometer: Any,
        on_reading: Callable[[float], None],
        on_fault: Callable[[str], None],
        timeout_s: float = MEASURE_TIMEOUT_S,
        on_ok: Callable[[], None] = lambda: None,
    ) -> None:
        self.thermometer = thermometer
        self._on_reading = on_reading
        self._on_fault = on_fault
        self._on_ok = on_ok
        self.timeout_s = timeout_s
        self._requests: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        self._requests.put("measure")

    def probe(self) -> None:
        """Read the sensor's ambient register once; ``on_ok`` when it answers."""
        self._requests.put("probe")

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="kiosk-measure", daemon=True)
        thread.start()
        self._thread = thread

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._requests.put(None)
        cancel = getattr(self.thermometer, "cancel", None)
        if callable(cancel):
            cancel()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise StationError(f"the measure thread did not stop within {timeout} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            kind = self._requests.get()
            if kind is None:
                return
            if kind == "probe":
                try:
                    self.thermometer.ambient()
                except SensorError:
                    continue
                self._on_ok()
                continue
            try:
                reading = self.thermometer.measure(self.timeout_s)
            except SensorError as exc:
                if self._stop.is_set():
                    return
                self._on_fault(str(exc))
                continue
            self._on_reading(float(reading.value_c))


class PreviewTap:
    """The camera as the decoder sees it, keeping the last frame for the screen's preview."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.last_frame: Frame | None = None

    def read(self, timeout: float) -> Frame:
        frame = self.source.read(timeout)
        self.last_frame = frame
        return frame

    def close(self) -> None:
        self.source.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


class Speaker(Protocol):
    def say(self, view: View, language: str) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


@dataclass
class PanelMessage:
    """The last answer the sampler panel shows: what happened, or what to fix."""

    ok: bool
    en: str
    zh: str
    at: float = field(default_factory=time.monotonic)

    def text(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class Kiosk:
    """One kiosk: station + devices + flow + workers. Actions run on the UI thread."""

    def __init__(
        self,
        config: StationConfig,
        station: Station,
        hardware: Hardware,
        post: Post,
        *,
        speaker: Speaker | None = None,
        measure_timeout_s: float = MEASURE_TIMEOUT_S,
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
            set_lights=hardware.lights.show,  # type: ignore[arg-type]
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
        self.decoder = hardware.decode_worker(
            self._payload, on_fault=self._camera_fault, on_recover=self._camera_ok
        )
        self.codes_read = 0
        self.last_scan: Any = None  # the last scanner result, or the error it raised
        self._id_key: bytes | None = None

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
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
        if self.flow.thermometer_faulty and now - self._last_probe >= PROBE_EVERY_S:
            self._last_probe = now
            self.measure.probe()

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
        if view.state.value == "idle":
            self.decoder.forget()
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

    def scan(self, text: str) -> Any:
        """A tube or box barcode from the scanner (or a staff badge, which unlocks)."""
        mode = TubeMode.SINGLE if self._single_scan() else TubeMode.POOL
        result = self.station.scan(text, self.sampler, mode)
        self.arm_single = False
        if result.tube is not None:
            self._done(
                f"Tube {result.tube.tube} opened ({result.tube.mode}).",
                f"试管 {result.tube.tube} 已打开（{'单采' if mode == 'single' else '混采'}）。",
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

    def seal(self, tube: str | None = None) -> Any:
        result = self.station.seal(self.sampler, tube)
        self._done(
            f"Tube {result.tube.tube} sealed with {result.tube.count}.",
            f"试管 {result.tube.tube} 已封管，共 {result.tube.count} 人。",
        )
        return result

    def void(self, reason: str, tube: str | None = None) -> Any:
        result = self.station.void(reason, self.sampler, tube)
        self._done(
            f"Tube {result.tube.tube} voided: its members check in again.",
            f"试管 {result.tube.tube} 已作废：成员需重新登记。",
        )
        return result

    def remove(self, resident: str, reason: str = "removed by sampler") -> Any:
        result = self.station.remove(resident, reason, self.sampler)
        self._done("Resident removed.", "已移出该居民。")
        return result

    def dispatch(self, box: str) -> Any:
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

    def member_names(self, members: tuple[str, ...]) -> list[str]:
        """The masked names of a tube's members as their check-ins recorded them."""
        names: list[str] = []
        for sub in members:
            row = self.station.db.conn.execute(
                "SELECT name FROM checkins WHERE resident = ? ORDER BY id DESC LIMIT 1", (sub,)
            ).fetchone()
            names.append(str(row[0]) if row is not None and row[0] else "")
        return names

    def recent_alerts(self, limit: int = 3) -> list[tuple[str, str]]:
        """The station's latest alerts (kind, local time) from its own events."""
        rows = self.station.db.conn.execute(
            "SELECT payload FROM outbox WHERE type = 'sampling.alert.raised' "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        out: list[tuple[str, str]] = []
        for (payload,) in rows:
            event = json.loads(payload)
            at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).astimezone()
            out.append((str(event["data"].get("kind")), at.strftime("%H:%M")))
        return out

    def link_status(self) -> dict[str, Any]:
        """The agent's link state and the backlog, as the agent records them."""
        db = self.station.db
        st = outbox.stats(db)
        state = outbox.read_state(db)
        return {
            "depth": st.depth,
            "oldest_s": st.oldest_undelivered_age_s,
            "link": state.get("link.state", "unknown"),
            "alerts": {
                k.removeprefix("alert."): v
                for k, v in state.items()
                if k.startswith("alert.") and v is not None
            },
        }


def build(
    config: StationConfig,
    *,
    hardware: Hardware | None = None,
    post: Post,
    verifier: Any = None,
    speaker: Speaker | None = None,
    measure_timeout_s: float = MEASURE_TIMEOUT_S,
) -> Kiosk:
    """The one composition root: CLI, drills and tests all build a kiosk here."""
    if verifier is None:
        verifier = CodeVerifier(
            TrustStore.load(config.health_code.trusted_keys), config.health_code.leeway_s
        )
    station = Station.open(config, verifier)
    try:
        hw = hardware if hardware is not None else build_hardware(config)
    except BaseException:
        station.close()
        raise
    return Kiosk(config, station, hw, post, speaker=speaker, measure_timeout_s=measure_timeout_s)
