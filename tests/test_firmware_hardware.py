"""The composition root: simulated devices wired the same way as real ones, no fallback."""

from __future__ import annotations

import importlib.util
import queue
import time
from pathlib import Path

import pytest

from firmware.config import load_config
from firmware.errors import CameraError, DeviceError, LightsError, SensorError
from firmware.hardware import build_hardware, build_lights, build_thermometer
from firmware.sim.camera import SimCamera
from firmware.sim.thermometer import SimThermometer
from tests.support.config import write_config

HAS_PICAMERA2 = importlib.util.find_spec("picamera2") is not None


def test_sim_backend_wires_the_real_decoder_driver_and_lights(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    hw = build_hardware(config)
    try:
        assert hw.backend == "sim"
        assert hw.sim is not None
        assert hw.camera is hw.sim.camera
        assert isinstance(hw.camera, SimCamera)
        assert isinstance(hw.thermometer, SimThermometer)
        assert hw.engine.name == "zxing"
        # A drill step: show a code with the scenario's distortions, a temperature, a scan.
        got: queue.Queue[str] = queue.Queue()
        worker = hw.decode_worker(got)
        worker.start()
        try:
            hw.sim.camera.show("HC1:DRILL", {"rotate": 20, "blur": 1.0, "scale": 0.6})
            assert got.get(timeout=3.0) == "HC1:DRILL"
        finally:
            worker.stop(2.0)
        hw.sim.thermometer.queue([37.6, 36.9])
        assert [hw.thermometer.measure(2.0).value_c for _ in range(2)] == [37.6, 36.9]
        scanned: list[str] = []
        hw.scanner.start(scanned.append)
        hw.sim.scanner.feed("TB2026112300001")
        assert scanned == ["TB2026112300001"]
        hw.lights.show("go", "green")
        assert hw.lights.snapshot() == {"main": "idle", "green": "go", "isolation": "idle"}
    finally:
        hw.close()


def test_sim_backend_uses_the_configured_engine_and_offset(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            {
                "hardware": {
                    "decoder": {"engine": "pyzbar"},
                    "thermometer": {"calibration_offset_c": 0.5},
                }
            },
        )
    )
    hw = build_hardware(config)
    try:
        assert hw.engine.name == "pyzbar"
        assert hw.sim is not None
        hw.sim.thermometer.queue([36.6])
        reading = hw.thermometer.measure(2.0)
        assert reading.value_c == 36.6
        assert reading.object_c == pytest.approx(36.1, abs=0.02)
    finally:
        hw.close()


@pytest.mark.skipif(HAS_PICAMERA2, reason="picamera2 is installed: this is a Pi")
def test_pi_backend_without_a_camera_is_a_clear_error_never_the_simulator(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"backend": "pi"}}))
    with pytest.raises(CameraError, match="picamera2 is not installed"):
        build_hardware(config)


def test_pi_backend_without_the_i2c_bus_says_how_to_enable_it(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, {"hardware": {"backend": "pi", "thermometer": {"bus": 97}}})
    )
    with pytest.raises(SensorError, match=r"no I2C bus /dev/i2c-97.*dtparam=i2c_arm=on"):
        build_thermometer(config.hardware)


def test_every_device_error_is_a_device_error() -> None:
    assert issubclass(CameraError, DeviceError)
    assert issubclass(SensorError, DeviceError)


def test_a_camera_that_stops_is_a_recorded_fault_and_the_rest_goes_on(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"camera": {"fps": 30}}}))
    hw = build_hardware(config)
    assert hw.sim is not None
    faults: list[CameraError] = []
    got: queue.Queue[str] = queue.Queue()
    worker = hw.decode_worker(got, on_fault=faults.append)
    worker.frame_timeout_s = 0.1
    worker.start()
    try:
        hw.sim.camera.stall()
        deadline = time.monotonic() + 3
        while not faults and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(faults) == 1
        assert set(hw.faults) == {"camera"}
        assert hw.faults["camera"] is faults[0]
        # The thermometer and the scanner still work.
        hw.sim.thermometer.queue([36.4])
        assert hw.thermometer.measure(2.0).value_c == 36.4
        hw.sim.camera.show("HC1:BACK")
        hw.sim.camera.resume()
        assert got.get(timeout=3.0) == "HC1:BACK"
        deadline = time.monotonic() + 3
        while hw.faults and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hw.faults == {}
        hw.lights.show("fault")  # the lights still answer (the kiosk shows the fault)
        assert hw.lights.snapshot()["main"] == "fault"
    finally:
        worker.stop(2.0)
        hw.close()


@pytest.mark.skipif(
    importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed: this is a Pi"
)
def test_pi_lights_without_lgpio_fail_clearly_without_trying_other_libraries(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, {"hardware": {"backend": "pi"}}))
    with pytest.raises(LightsError, match="python3-lgpio"):
        build_lights(config.hardware)
