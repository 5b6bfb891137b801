"""The kiosk's threads apart from the flow: its core loop, the watchdog's judge, the
thermometer's worker and the camera tap the preview reads.

Every thread here has an owner, a stop event and a timed join that raises when the thread
outlives it. Nothing here knows the station's rules: results go back to their owner through
the callbacks it gives.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from firmware.camera import Frame, FrameSource
from firmware.errors import SensorError, StationError
from firmware.thermometer import Reading

log = logging.getLogger(__name__)

T = TypeVar("T")
Post = Callable[[Callable[[], None]], None]
MEASURE_TIMEOUT_S = 5.0
CORE_STALL_S = 20.0  # see Watchdog


class Pinger(Protocol):
    """What the watchdog pings through (``firmware.systemd.Notifier``)."""

    def watchdog(self) -> bool: ...


class Measures(Protocol):
    """The thermometer as the measure worker uses it (``firmware.thermometer.Thermometer``)."""

    def ambient(self) -> float: ...
    def measure(self, timeout: float = ...) -> Reading: ...
    def cancel(self) -> None: ...


def call_on(post: Post, fn: Callable[[], T], timeout: float, who: str) -> T:
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
    value: T = box["value"]
    return value


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

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

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

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
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

    def __init__(self, notifier: Pinger, core: LoopThread, stall_s: float = CORE_STALL_S) -> None:
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
        thermometer: Measures,
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
        self.thermometer.cancel()  # a measurement under way ends now, not at its timeout
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
