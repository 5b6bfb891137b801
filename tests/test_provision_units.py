"""Every unit file provisioning installs passes `systemd-analyze verify` without a word, and
the daily purge runs `station db purge` as the services do, with their configuration."""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from provisioning.inventory import CONFIG_PATH, CURRENT_LINK, STATE_DIR, Inventory
from provisioning.render import (
    AGENT_UNIT,
    KIOSK_UNIT,
    PURGE_SERVICE,
    PURGE_TIMER,
    UNITS,
    desired_state,
    render_unit,
)
from tests.support.config import write_config
from tests.support.provision import offline_inventory
from tests.support.station import open_station, resident

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
ROOT = Path(__file__).resolve().parents[1]


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
            "purge_at": "21:30",
            "config": {"broker": {"url": "mqtts://gw:8883"}},
        },
    )


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"a setting outside any section: {line}"
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return out


def installed_units(inventory: Inventory) -> dict[str, dict[str, dict[str, list[str]]]]:
    desired = desired_state(inventory, inventory.stations[0])
    return {
        f.path.name: unit_sections((f.content or b"").decode())
        for f in desired.files
        if f.kind == "unit"
    }


def fake_release(directory: Path, body: str = "exit 0") -> Path:
    """A release directory whose ``venv/bin/station`` runs ``body`` (a shell script)."""
    (directory / "venv" / "bin").mkdir(parents=True)
    station = directory / "venv" / "bin" / "station"
    station.write_text(f"#!/bin/sh\n{body}\n")
    station.chmod(0o755)
    return directory


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS)
def test_units_pass_systemd_analyze_verify(tmp_path: Path, inventory: Inventory, unit: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    # The release the units start, where verify can see that ExecStart exists; every unit
    # sits beside the others, as on the station, so a timer finds its service.
    current = fake_release(tmp_path / "opt" / "current")
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = render_unit(name, inventory.stations[0], current=str(current))
        (units / name).write_text(text)
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
    assert sorted(units) == sorted(f"/etc/systemd/system/{u}" for u in UNITS)
    kiosk = (units["/etc/systemd/system/sampling-kiosk.service"] or b"").decode()
    agent = (units["/etc/systemd/system/sampling-agent.service"] or b"").decode()
    assert "ExecStart=/opt/sampling-station/current/venv/bin/station kiosk --config " in kiosk
    assert "WatchdogSec=20" in kiosk and "Type=notify" in kiosk and "Restart=always" in kiosk
    assert "TTYPath=/dev/tty1" in kiosk and "Conflicts=getty@tty1.service" in kiosk
    assert "After=network-online.target time-sync.target" in agent
    assert "Wants=network-online.target time-sync.target" in agent
    assert "User=sampling" in agent
    for body in units.values():
        assert "$" not in (body or b"").decode()  # every placeholder filled


def test_the_purge_runs_station_db_purge_as_the_services_do(inventory: Inventory) -> None:
    units = installed_units(inventory)
    purge = units[PURGE_SERVICE]["Service"]
    argv = shlex.split(purge["ExecStart"][0])
    assert argv == [
        f"{CURRENT_LINK}/venv/bin/station", "db", "purge", "--config", str(CONFIG_PATH)
    ]  # fmt: skip
    # The same release, user, working directory and configuration file as the services.
    for name in (KIOSK_UNIT, AGENT_UNIT):
        service = units[name]["Service"]
        other = shlex.split(service["ExecStart"][0])
        assert other[0] == argv[0]
        assert other[other.index("--config") + 1] == str(CONFIG_PATH)
        for key in ("User", "Group", "WorkingDirectory"):
            assert service[key] == purge[key], key
    assert purge["User"] == ["sampling"] and purge["WorkingDirectory"] == [str(STATE_DIR)]
    # A oneshot at the lowest priorities, started by its timer only (nothing installs it).
    assert purge["Type"] == ["oneshot"]
    assert purge["Nice"] == ["19"] and purge["IOSchedulingClass"] == ["idle"]
    assert "Restart" not in purge and "Install" not in units[PURGE_SERVICE]
    timer = units[PURGE_TIMER]
    assert timer["Timer"] == {
        "OnCalendar": ["*-*-* 21:30:00"],  # the station's purge_at
        "RandomizedDelaySec": ["30min"],
        "Persistent": ["true"],
        "Unit": [PURGE_SERVICE],
    }
    assert timer["Install"] == {"WantedBy": ["timers.target"]}


@pytest.mark.timeout(60)
def test_the_purge_units_command_purges_a_station_database(
    tmp_path: Path, inventory: Inventory
) -> None:
    """The unit's command line, run as written with this project's `station`, purges: only
    the configuration's path differs (the station's is under /etc)."""
    rig = open_station(tmp_path / "state")
    rig.clock.now = time.time() - 3600  # an hour ago, whatever this machine's date
    for n in range(3):
        rig.station.check_in(resident(f"resident-{n}", name="张三"), [36.5])
    rig.station.close()
    db_path = rig.config.storage.path
    conn = sqlite3.connect(db_path, isolation_level=None)
    events = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert events > 0
    # The agent delivered all but the newest event; the retention is zero days.
    conn.execute(
        "UPDATE outbox SET published_at = ?, delivered_at = ? WHERE seq < ?",
        (time.time() - 60, time.time() - 60, events),
    )
    conn.close()
    config = write_config(tmp_path / "state", {"storage": {"retention_days": 0}})
    # `station` of the release: this project's command-line entry point.
    entry = f'exec {shlex.quote(sys.executable)} -c "import sys; from kiosk_ui.cli import main; '
    entry += 'sys.exit(main())" "$@"'
    current = fake_release(tmp_path / "current", entry)
    text = render_unit(PURGE_SERVICE, inventory.stations[0], current=str(current))
    argv = shlex.split(unit_sections(text)["Service"]["ExecStart"][0])
    assert argv[-2:] == ["--config", str(CONFIG_PATH)]
    proc = subprocess.run(
        [*argv[:-1], str(config), "--json"],
        cwd=tmp_path / "state",
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"events": ' + str(events - 1) in proc.stdout
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT seq FROM outbox").fetchall() == [(events,)]
        assert conn.execute(
            "SELECT count(*) FROM checkins WHERE resident IS NULL AND name IS NULL"
        ).fetchone() == (3,)
    finally:
        conn.close()


def test_every_unit_template_ships_in_the_wheel() -> None:
    """The templates are package data: a kind of file the wheel leaves out never reaches a
    technician's laptop."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    templates = [p.name for p in (ROOT / "provisioning" / "units").iterdir() if p.is_file()]
    assert set(UNITS) <= set(templates)
    left_out = [
        name
        for name in templates
        if not name.endswith(".py") and not any(fnmatch.fnmatch(name, pat) for pat in patterns)
    ]
    assert left_out == []


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: verify's stderr names a bad setting (exit status is 0)."""
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\nIOSchedulingClass=low\n")
    timer = tmp_path / "broken.timer"
    timer.write_text("[Timer]\nOnCalendar=*-*-* 25:00:00\n")
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit), str(timer)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "restart specifier" in proc.stderr
    assert "IO scheduling class" in proc.stderr
    assert "calendar specification" in proc.stderr
