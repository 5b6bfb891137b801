"""Every unit file provisioning installs passes `systemd-analyze verify` without a word."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provisioning.inventory import Inventory
from provisioning.render import SERVICES, desired_state, render_unit
from tests.support.provision import offline_inventory

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return offline_inventory(
        tmp_path,
        {
            "id": "K01",
            "township": "T01",
            "address": "10.0.0.1",
            "key": "key",
            "kiosk_watchdog_s": 20,
            "config": {"broker": {"url": "mqtts://gw:8883"}},
        },
    )


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", SERVICES)
def test_units_pass_systemd_analyze_verify(tmp_path: Path, inventory: Inventory, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    # The release the unit starts, where verify can see that its ExecStart exists.
    current = tmp_path / "opt" / "current"
    (current / "venv" / "bin").mkdir(parents=True)
    station = current / "venv" / "bin" / "station"
    station.write_text("#!/bin/sh\nexit 0\n")
    station.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    text = render_unit(unit, inventory.stations[0], current=str(current))
    (units / unit).write_text(text)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(units / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    assert proc.returncode == 0


def test_the_installed_units_are_the_rendered_templates(inventory: Inventory) -> None:
    desired = desired_state(inventory, inventory.stations[0])
    units = {str(f.path): f.content for f in desired.files if f.kind == "unit"}
    kiosk = (units["/etc/systemd/system/sampling-kiosk.service"] or b"").decode()
    agent = (units["/etc/systemd/system/sampling-agent.service"] or b"").decode()
    assert "ExecStart=/opt/sampling-station/current/venv/bin/station kiosk --config " in kiosk
    assert "WatchdogSec=20" in kiosk and "Type=notify" in kiosk and "Restart=always" in kiosk
    assert "TTYPath=/dev/tty1" in kiosk and "Conflicts=getty@tty1.service" in kiosk
    assert "After=network-online.target time-sync.target" in agent
    assert "Wants=network-online.target time-sync.target" in agent
    assert "User=sampling" in agent and "$" not in agent + kiosk  # every placeholder filled


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: verify's stderr names a bad setting (exit status is 0)."""
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "restart specifier" in proc.stderr
