"""The composition root of the devices: one function per device and one for all of them.

Stable interface:

- :func:`build_hardware` ``(config, *, pin_factory=None) -> Hardware`` -- backend ``"pi"``
  opens the real devices (picamera2 or OpenCV, the MLX90614 on ``/dev/i2c-N``, gpiozero's
  lgpio pin factory, the evdev scan gun); backend ``"sim"`` builds the simulated ones
  (:class:`~firmware.sim.camera.SimCamera`, :class:`~firmware.sim.thermometer.SimThermometer`,
  gpiozero's ``MockFactory``, :class:`~firmware.sim.scanner.SimScanner`), reachable typed through
  ``hardware.sim``. A device that cannot be opened on ``"pi"`` raises a DeviceError that says
  what is missing; there is never a fallback from real to simulated devices.
- ``build_camera``, ``build_thermometer``, ``build_lights``, ``build_scanner`` -- the same,
  one device at a time, for a caller that goes on with what still works (the self-test);
  ``build_rtc`` the DS3231 real-time clock of ``[hardware.rtc]`` (the self-test reads it).
- :meth:`Hardware.decode_worker` -- a :class:`~firmware.qr.DecodeWorker` on the camera with
  the configured engine and repeat suppression. A camera that stops delivering frames is
  kept in ``hardware.faults`` until it recovers and reported to ``on_fault``; what the
  lights show is the kiosk's decision (its flow is the one owner of the lights, and shows
  ``fault``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory
from smbus2 import SMBus

from firmware.camera import FrameSource, OpenCVSource, Picamera2Source
from firmware.config import HardwareSection, StationConfig
from firmware.errors import CameraError, ClockError, DeviceError, LightsError, SensorError
from firmware.lights import LaneLights
from firmware.qr import DecodeWorker, PayloadSink, QrEngine, make_engine
from firmware.rtc import DS3231
from firmware.scanner import BarcodeScanner, EvdevScanner
from firmware.sim.camera import SimCamera
from firmware.sim.i2c import FakeSMBus
from firmware.sim.rtc import FakeDS3231
from firmware.sim.scanner import SimScanner
from firmware.sim.thermometer import SimThermometer
from firmware.thermometer import MLX90614, Thermometer

log = logging.getLogger(__name__)


@dataclass
class SimDevices:
    """The simulated devices with their drill controls (``show``, ``queue``, ``feed``)."""

    camera: SimCamera
    thermometer: SimThermometer
    scanner: SimScanner
    pin_factory: Any


@dataclass
class Hardware:
    backend: str
    camera: FrameSource
    thermometer: Thermometer
    lights: LaneLights
    scanner: BarcodeScanner
    engine: QrEngine
    config: HardwareSection
    sim: SimDevices | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    faults: dict[str, DeviceError] = field(default_factory=dict)  # device -> its error

    def decode_worker(
        self,
        sink: PayloadSink,
        *,
        on_fault: Callable[[CameraError], None] | None = None,
        on_recover: Callable[[], None] | None = None,
    ) -> DecodeWorker:
        """A decode worker on the camera; a camera fault is kept in ``faults`` and reaches
        ``on_fault``; recovery clears it and reaches ``on_recover``."""

        def faulted(exc: CameraError) -> None:
            self.faults["camera"] = exc
            if on_fault is not None:
                on_fault(exc)

        def back() -> None:
            self.faults.pop("camera", None)
            if on_recover is not None:
                on_recover()

        return DecodeWorker(
            self.camera,
            self.engine,
            sink,
            repeat_suppress_s=self.config.decoder.repeat_suppress_s,
            frame_timeout_s=max(1.0, 3.0 / self.config.camera.fps),
            on_fault=faulted,
            on_recover=back,
        )

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except DeviceError as exc:
                log.warning("closing a device failed: %s", exc)
        self._closers.clear()


def mock_pin_factory() -> Any:
    """gpiozero's MockFactory (a Raspberry Pi 3B's header), for the simulated backend."""
    return MockFactory()


def build_camera(hw: HardwareSection) -> FrameSource:
    c = hw.camera
    if hw.backend == "sim":
        return _sim_camera(hw)
    if c.source == "picamera2":
        return Picamera2Source(c.width, c.height, c.fps)
    return OpenCVSource(c.device, c.width, c.height, c.fps)


def build_thermometer(hw: HardwareSection) -> Thermometer:
    t = hw.thermometer
    if hw.backend == "sim":
        return _sim_thermometer(hw)
    bus = _open_bus(t.bus, "thermometer", SensorError)
    return Thermometer(
        MLX90614(bus, t.address, retries=t.retries),
        calibration_offset_c=t.calibration_offset_c,
        presence_delta_c=t.presence_delta_c,
        stable_window=t.stable_window,
        stable_spread_c=t.stable_spread_c,
    )


def _open_bus(bus: int, device: str, error: type[DeviceError]) -> SMBus:
    dev = Path(f"/dev/i2c-{bus}")
    try:
        return SMBus(bus)
    except FileNotFoundError:
        raise error(
            f"no I2C bus {dev}: enable it with dtparam=i2c_arm=on in /boot/firmware/config.txt "
            f"(firmware/boot/config.txt) and reboot, or fix hardware.{device}.bus"
        ) from None
    except PermissionError:
        raise error(
            f"no permission to open {dev}: the station's user must be in the i2c group"
        ) from None


def build_rtc(hw: HardwareSection) -> DS3231:
    """The DS3231 of ``[hardware.rtc]``; on ``"sim"`` a simulated one that runs and shows
    the system's time, as a fitted clock with a good coin cell does."""
    r = hw.rtc
    if hw.backend == "sim":
        chip = FakeDS3231(datetime.now(UTC), running=True)
        return DS3231(FakeSMBus({r.address: chip}), r.address)
    return DS3231(_open_bus(r.bus, "rtc", ClockError), r.address)


def lgpio_pin_factory() -> Any:
    """gpiozero's lgpio factory, chosen explicitly: gpiozero's own search would try other
    libraries in turn, and the station must fail clearly instead."""
    try:
        from gpiozero.pins.lgpio import LGPIOFactory  # noqa: PLC0415 (imports lgpio, Pi only)
    except ImportError as exc:
        raise LightsError(
            f"no GPIO library for the lights ({exc}): apt install python3-lgpio"
        ) from None
    try:
        return LGPIOFactory()
    except OSError as exc:
        raise LightsError(
            f"cannot open the GPIO chip: {exc} (is the station's user in the gpio group?)"
        ) from None


def build_lights(hw: HardwareSection, pin_factory: Any = None) -> LaneLights:
    if pin_factory is None:
        pin_factory = mock_pin_factory() if hw.backend == "sim" else lgpio_pin_factory()
    return LaneLights(hw.lights, pin_factory)


def build_scanner(hw: HardwareSection) -> BarcodeScanner:
    s = hw.scanner
    if hw.backend == "sim":
        return _sim_scanner(hw)
    return EvdevScanner(s.device, min_length=s.min_length)


def build_hardware(config: StationConfig, *, pin_factory: Any = None) -> Hardware:
    """Every device of ``config.hardware``; closes what it opened if one fails."""
    hw = config.hardware
    engine = make_engine(hw.decoder.engine)
    if hw.backend == "sim":
        return _build_sim(hw, engine, pin_factory)
    closers: list[Callable[[], None]] = []
    try:
        camera = build_camera(hw)
        closers.append(camera.close)
        thermometer = build_thermometer(hw)
        closers.append(_bus_closer(thermometer))
        lights = build_lights(hw, pin_factory)
        closers.append(lights.close)
        scanner = build_scanner(hw)
        closers.append(scanner.stop)
    except DeviceError:
        for close in reversed(closers):
            close()
        raise
    log.info("hardware: backend pi, decoder %s", engine.name)
    return Hardware("pi", camera, thermometer, lights, scanner, engine, hw, None, closers)


def _build_sim(hw: HardwareSection, engine: QrEngine, pin_factory: Any) -> Hardware:
    factory = mock_pin_factory() if pin_factory is None else pin_factory
    camera, thermometer, scanner = _sim_camera(hw), _sim_thermometer(hw), _sim_scanner(hw)
    lights = build_lights(hw, factory)
    sim = SimDevices(camera, thermometer, scanner, factory)
    closers = [camera.close, thermometer.bus.close, lights.close, scanner.stop]
    log.info("hardware: backend sim, decoder %s", engine.name)
    return Hardware("sim", camera, thermometer, lights, scanner, engine, hw, sim, closers)


# The simulated devices, built once for build_hardware and for each build_<device>.


def _sim_camera(hw: HardwareSection) -> SimCamera:
    c = hw.camera
    return SimCamera(c.width, c.height, c.fps)


def _sim_thermometer(hw: HardwareSection) -> SimThermometer:
    t = hw.thermometer
    return SimThermometer(
        address=t.address,
        calibration_offset_c=t.calibration_offset_c,
        presence_delta_c=t.presence_delta_c,
        stable_window=t.stable_window,
        stable_spread_c=t.stable_spread_c,
        retries=t.retries,
    )


def _sim_scanner(hw: HardwareSection) -> SimScanner:
    return SimScanner(min_length=hw.scanner.min_length)


def _bus_closer(thermometer: Thermometer) -> Callable[[], None]:
    def close() -> None:
        bus = thermometer.sensor.bus
        closer = getattr(bus, "close", None)
        if callable(closer):
            closer()

    return close
