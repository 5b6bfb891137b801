"""The Pi boot files: what the thermometer, camera, lights and scanner need."""

from __future__ import annotations

import re
from importlib import resources

BOOT = resources.files("firmware").joinpath("boot")


def settings() -> dict[str, str]:
    text = BOOT.joinpath("config.txt").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if key == "dtparam":
                key, _, value = value.partition("=")
            out[key] = value
    return out


def test_config_txt_enables_i2c_at_a_speed_the_mlx90614_tolerates_and_the_camera() -> None:
    s = settings()
    assert s["i2c_arm"] == "on"
    assert 10_000 <= int(s["i2c_arm_baudrate"]) <= 100_000  # SMBus: 100 kHz at most
    assert s["camera_auto_detect"] == "1"


def test_udev_rules_cover_i2c_gpio_and_the_scanner_and_groups_match() -> None:
    rules = BOOT.joinpath("99-sampling-station.rules").read_text(encoding="utf-8")
    groups = {
        line.strip()
        for line in BOOT.joinpath("groups.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert groups == {"i2c", "gpio", "video", "input"}
    used = set(re.findall(r'GROUP="([a-z0-9_-]+)"', rules))
    assert used <= groups
    assert {"i2c", "gpio", "input"} <= used
    assert "input/barcode-scanner" in rules
    for line in rules.splitlines():
        if line and not line.startswith("#"):
            assert line.count('"') % 2 == 0, line
