"""The self-test on a real station: run by a technician on the device, skipped elsewhere.

    SAMPLING_STATION_CONFIG=/etc/sampling-station/station.toml \\
        .venv/bin/pytest tests/test_selftest_hardware.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from firmware.config import load_config
from hardware_tests.probes import is_raspberry_pi
from hardware_tests.selftest import SelfTest

CONFIG = os.environ.get("SAMPLING_STATION_CONFIG")

pytestmark = pytest.mark.skipif(
    CONFIG is None or not is_raspberry_pi(),
    reason="needs a Raspberry Pi and SAMPLING_STATION_CONFIG naming its configuration",
)


def test_every_device_of_this_station_passes() -> None:
    assert CONFIG is not None
    config = load_config(Path(CONFIG))
    assert config.hardware.backend == "pi"
    results = SelfTest(config).run()
    failed = [f"{c.name}: {c.detail}" for c in results if c.status == "fail"]
    assert failed == []
    devices = {c.name: c.status for c in results}
    for name in ("thermometer", "camera", "lights"):
        assert devices[name] == "pass", name
