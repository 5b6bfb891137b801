"""`station selftest`: bring-up checks of a station, one result per part.

Each check returns a :class:`Check` with status ``pass``, ``fail`` or ``skip`` and a detail a
technician can act on (docs/hardware.md explains every failure). The checks run in order and
each runs whatever the others found: a dead thermometer does not stop the camera check.

On the simulated backend every device check runs against the simulated devices (the camera
shows the test card, the scanner is fed the test barcode). On the ``pi`` backend, device
checks skip with a reason on a machine that is not a Raspberry Pi; the scanner check and the
technician's confirmation of the lights need ``--interactive``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from firmware.config import HardwareSection, StationConfig
from firmware.errors import DeviceError, StationError
from firmware.hardware import (
    build_camera,
    build_lights,
    build_rtc,
    build_scanner,
    build_thermometer,
    mock_pin_factory,
)
from firmware.lights import OUTPUTS, STATES
from firmware.qr import make_engine
from firmware.rtc import DS3231, RtcState
from firmware.sim.camera import SimCamera
from firmware.sim.scanner import SimScanner
from hardware_tests import clock
from hardware_tests.probes import (
    ClockStatus,
    SelfTestError,
    is_raspberry_pi,
    probe_broker,
    probe_clock,
)
from hardware_tests.testcard import TEST_BARCODE, TEST_CARD_TEXT

log = logging.getLogger(__name__)

Status = Literal["pass", "fail", "skip"]
# What a tent can plausibly be: a thermometer reading outside this is broken or misread.
AMBIENT_PLAUSIBLE_C = (-10.0, 50.0)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


Ask = Callable[[str], str]


@dataclass
class SelfTest:
    config: StationConfig
    interactive: bool = False
    ask: Ask = input
    say: Callable[[str], None] = print
    pin_factory: Any = None
    clock_probe: Callable[[], ClockStatus] = probe_clock
    on_pi: Callable[[], bool] = is_raspberry_pi
    rtc_factory: Callable[[HardwareSection], DS3231] = build_rtc
    rtc_state: RtcState | None = None  # what check_rtc read, for check_clock
    timeout_s: float = 5.0
    results: list[Check] = field(default_factory=list)

    @property
    def sim(self) -> bool:
        return self.config.hardware.backend == "sim"

    def run(self) -> list[Check]:
        self.results = [self.check_configuration()]
        for check in (
            self.check_thermometer,
            self.check_camera,
            self.check_lights,
            self.check_scanner,
            self.check_storage,
            self.check_rtc,
            self.check_clock,
            self.check_broker,
        ):
            self.results.extend(check())
        return self.results

    def _confirm(self, question: str) -> bool:
        answer = self.ask(f"{question} [y/n] ").strip().lower()
        return answer in ("y", "yes")

    def _no_hardware(self) -> str | None:
        if self.sim or self.on_pi():
            return None
        return "not a Raspberry Pi (no 'Raspberry Pi' in /proc/device-tree/model)"

    # -- configuration ---------------------------------------------------------------------

    def check_configuration(self) -> Check:
        c = self.config
        files = {"health_code.trusted_keys": c.health_code.trusted_keys}
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            value = getattr(c.broker, key)
            if value is not None:
                files[f"broker.{key}"] = value
        for key in ("staff_pin_file", "id_hash_key_file"):
            value = getattr(c.kiosk, key)
            if value is not None:
                files[f"kiosk.{key}"] = value
        missing = [f"{k} ({p})" for k, p in files.items() if not Path(p).is_file()]
        if missing:
            return Check("configuration", "fail", "missing files: " + ", ".join(missing))
        return Check(
            "configuration",
            "pass",
            f"station {c.station.id} of {c.station.township}, role {c.station.role}, "
            f"backend {c.hardware.backend}, decoder {c.hardware.decoder.engine}",
        )

    # -- thermometer -----------------------------------------------------------------------

    def check_thermometer(self) -> list[Check]:
        absent = self._no_hardware()
        if absent:
            return [Check("thermometer", "skip", absent)]
        t = self.config.hardware.thermometer
        where = f"MLX90614 at 0x{t.address:02X} on I2C bus {t.bus}"
        try:
            thermometer = build_thermometer(self.config.hardware)
        except DeviceError as exc:
            return [Check("thermometer", "fail", str(exc))]
        try:
            ambient, a = thermometer.sensor.ambient()
            obj, o = thermometer.sensor.object()
        except DeviceError as exc:
            return [Check("thermometer", "fail", f"{where}: {exc}")]
        finally:
            closer = getattr(thermometer.sensor.bus, "close", None)
            if callable(closer):
                closer()
        lo, hi = AMBIENT_PLAUSIBLE_C
        if not lo <= ambient <= hi:
            return [
                Check(
                    "thermometer",
                    "fail",
                    f"{where}: ambient {ambient:.1f} C is not plausible in a tent "
                    f"({lo:.0f} to {hi:.0f} C): a faulty sensor or the wrong device at "
                    "this address",
                )
            ]
        retried = a.tries + o.tries - 2
        return [
            Check(
                "thermometer",
                "pass",
                f"{where}: ambient {ambient:.1f} C, object {obj:.1f} C, PEC verified"
                + (f" ({retried} retried reads)" if retried else ""),
            )
        ]

    # -- camera and QR decoding ------------------------------------------------------------

    def check_camera(self) -> list[Check]:
        absent = self._no_hardware()
        if absent:
            return [Check("camera", "skip", absent), Check("test card", "skip", absent)]
        hw = self.config.hardware
        try:
            camera = build_camera(hw)
        except DeviceError as exc:
            return [
                Check("camera", "fail", str(exc)),
                Check("test card", "skip", "no camera"),
            ]
        try:
            if isinstance(camera, SimCamera):
                camera.show(TEST_CARD_TEXT)
            wanted = min(10, hw.camera.fps)
            start = time.monotonic()
            frames = []
            try:
                for _ in range(wanted):
                    frames.append(camera.read(self.timeout_s))
            except DeviceError as exc:
                return [
                    Check("camera", "fail", f"{len(frames)} frames, then: {exc}"),
                    Check("test card", "skip", "the camera stopped delivering frames"),
                ]
            elapsed = time.monotonic() - start
            shape = frames[-1].shape
            camera_check = Check(
                "camera",
                "pass",
                f"{len(frames)} frames of {shape[1]}x{shape[0]} in {elapsed:.2f} s "
                f"({len(frames) / max(elapsed, 1e-6):.0f} fps)",
            )
            return [camera_check, self._test_card(camera)]
        finally:
            camera.close()

    def _test_card(self, camera: Any) -> Check:
        engine = make_engine(self.config.hardware.decoder.engine)
        wait = self.timeout_s
        if not self.sim and self.interactive:
            self.ask("Hold the printed test card 30-50 cm in front of the camera, then Enter ")
            wait = 15.0
        deadline = time.monotonic() + wait
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                frame = camera.read(self.timeout_s)
            except DeviceError as exc:
                return Check("test card", "fail", f"the camera stopped delivering frames: {exc}")
            found = engine.decode(frame)
            if TEST_CARD_TEXT in found:
                return Check("test card", "pass", f"read by {engine.name}")
            seen.extend(t for t in found if t not in seen)
            if not self.sim and not self.interactive:
                break
        if seen:
            return Check("test card", "fail", f"read other codes, not the test card: {seen[:3]}")
        if not self.sim and not self.interactive:
            return Check(
                "test card",
                "skip",
                "no test card in view; run with --interactive and hold it up",
            )
        return Check(
            "test card",
            "fail",
            f"not read within {wait:.0f} s: check focus, lighting and the camera's view",
        )

    # -- lights and buzzer -----------------------------------------------------------------

    def check_lights(self) -> list[Check]:
        absent = self._no_hardware()
        if absent:
            return [Check("lights", "skip", absent)]
        factory = self.pin_factory
        if factory is None and self.sim:
            factory = mock_pin_factory()
        try:
            lights = build_lights(self.config.hardware, factory)
        except StationError as exc:
            return [Check("lights", "fail", str(exc))]
        problems: list[str] = []
        declined: list[str] = []
        try:
            # Lamp test: each output alone, read back from its pin.
            for name in OUTPUTS:
                lights.lamp_test(name)
                levels = lights.outputs()
                wrong = [n for n, on in levels.items() if on != (n == name)]
                if wrong:
                    problems.append(f"lamp test of {name}: pins {', '.join(wrong)} read wrong")
                if self.interactive and not self._confirm(f"Is only {describe(name)} on?"):
                    declined.append(name)
            # Every station state, steady outputs read back.
            for state in STATES:
                lane = "main" if state == "go" else None
                lights.show(state, lane)
                levels = lights.outputs()
                for n, want in lights.expected_outputs().items():
                    if want is not None and levels[n] != want:
                        problems.append(f"{state}: {n} reads {'on' if levels[n] else 'off'}")
            lights.show("idle")
        except StationError as exc:
            problems.append(str(exc))
        finally:
            lights.close()
        if problems:
            return [Check("lights", "fail", "; ".join(problems))]
        if declined:
            return [
                Check(
                    "lights",
                    "fail",
                    "the technician did not see: " + ", ".join(describe(n) for n in declined),
                )
            ]
        how = "confirmed by the technician" if self.interactive else "pins read back"
        return [
            Check(
                "lights",
                "pass",
                f"{len(OUTPUTS)} outputs and {len(STATES)} states cycled, {how}",
            )
        ]

    # -- scanner ---------------------------------------------------------------------------

    def check_scanner(self) -> list[Check]:
        absent = self._no_hardware()
        if absent:
            return [Check("scanner", "skip", absent)]
        if not self.sim and not self.interactive:
            return [Check("scanner", "skip", "needs a technician to scan: run with --interactive")]
        try:
            scanner = build_scanner(self.config.hardware)
        except DeviceError as exc:
            return [Check("scanner", "fail", str(exc))]
        got: list[str] = []
        arrived = threading.Event()

        def on_barcode(text: str) -> None:
            got.append(text)
            arrived.set()

        scanner.start(on_barcode)
        try:
            if isinstance(scanner, SimScanner):
                scanner.feed(TEST_BARCODE)
                wait = 1.0
            else:
                self.say("Scan any tube or box barcode now (20 s).")
                wait = 20.0
            arrived.wait(wait)
        finally:
            scanner.stop()
        if not got:
            return [Check("scanner", "fail", f"no barcode within {wait:.0f} s")]
        if self.sim and got[0] != TEST_BARCODE:
            return [Check("scanner", "fail", f"read {got[0]!r}, expected {TEST_BARCODE!r}")]
        return [Check("scanner", "pass", f"read {got[0]!r}")]

    # -- storage ---------------------------------------------------------------------------

    def check_storage(self) -> list[Check]:
        s = self.config.storage
        directory = s.path.parent
        if not directory.is_dir():
            return [Check("storage", "fail", f"{directory} does not exist")]
        probe = directory / f".selftest-{os.getpid()}"
        try:
            with probe.open("wb") as f:
                f.write(b"selftest\n")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as exc:
            return [Check("storage", "fail", f"cannot write in {directory}: {exc.strerror}")]
        if s.path.exists() and not os.access(s.path, os.R_OK | os.W_OK):
            return [Check("storage", "fail", f"{s.path} is not readable and writable")]
        free_mb = shutil.disk_usage(directory).free // (1024 * 1024)
        if free_mb < s.min_free_mb:
            return [
                Check(
                    "storage",
                    "fail",
                    f"{directory}: {free_mb} MB free, storage.min_free_mb is {s.min_free_mb}",
                )
            ]
        return [Check("storage", "pass", f"{directory} writable, {free_mb} MB free")]

    # -- clock -----------------------------------------------------------------------------

    def check_rtc(self) -> list[Check]:
        """The DS3231: present (answers), valid (ran all along, a possible time) or its
        oscillator stopped; and how far the system clock is from it."""
        r = self.config.hardware.rtc
        if not r.fitted:
            return [Check("rtc", "skip", "none fitted (hardware.rtc.fitted = false)")]
        absent = self._no_hardware()
        if absent:
            return [Check("rtc", "skip", absent)]
        where = f"DS3231 at 0x{r.address:02X} on I2C bus {r.bus}"
        try:
            rtc = self.rtc_factory(self.config.hardware)
        except DeviceError as exc:
            return [Check("rtc", "fail", f"absent: {exc}")]
        try:
            state = rtc.state()
        except DeviceError as exc:
            return [Check("rtc", "fail", f"absent: {exc}")]
        finally:
            closer = getattr(rtc.bus, "close", None)
            if callable(closer):
                closer()
        self.rtc_state = state
        if not state.valid or state.time is None:
            return [Check("rtc", "fail", f"{where}: present, {state.describe()}")]
        apart = state.time.timestamp() - time.time()
        return [
            Check(
                "rtc",
                "pass",
                f"{where}: present, {state.describe()}; the system clock is "
                f"{abs(apart):.0f} s {'behind' if apart > 0 else 'ahead of'} it",
            )
        ]

    def check_clock(self) -> list[Check]:
        """NTP, the real-time clock (as ``check_rtc`` read it) and the newest fact in the
        station database: see :mod:`hardware_tests.clock`."""
        verdict = clock.judge(
            time.time(),
            self.clock_probe(),
            self.rtc_state,
            clock.newest_fact(self.config.storage.path),
            sim=self.sim,
            gateway=clock.gateway_time(self.config.storage.path),
        )
        return [Check("clock", verdict.status, verdict.detail)]

    # -- broker ----------------------------------------------------------------------------

    def check_broker(self) -> list[Check]:
        try:
            detail = probe_broker(self.config.broker, self.config.station.id, self.timeout_s)
        except SelfTestError as exc:
            return [Check("broker", "fail", str(exc))]
        return [Check("broker", "pass", detail)]


def describe(output: str) -> str:
    return {
        "main_red": "the main lane's red light",
        "main_amber": "the main lane's amber light",
        "main_green": "the main lane's green light",
        "green_lane": "the green lane's light",
        "isolation_beacon": "the isolation beacon",
        "buzzer": "the buzzer (sounding)",
    }[output]


def summary(results: list[Check]) -> dict[str, Any]:
    return {
        "ok": all(c.status != "fail" for c in results),
        "checks": [c.as_dict() for c in results],
    }
