"""`station kiosk` as a process (offscreen), its PIN helper, and `station simulate` drawing
its screens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk_ui.cli import main
from kiosk_ui.core.staff_lock import StaffLock, load_secret_hashes
from tests.support.drills import TRUST, drill_config

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(
        SDL_VIDEODRIVER="offscreen",
        KIVY_HOME=str(tmp_path / "kivy"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    return env


def test_hash_pin_reads_stdin_and_prints_a_line_the_lock_accepts(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "kiosk", "--hash-pin"],
        input="13579\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert out.startswith("pbkdf2_sha256$") and "13579" not in out
    pins = tmp_path / "pins"
    pins.write_text(out + "\n")
    lock = StaffLock(load_secret_hashes(pins), 60)
    assert lock.unlock("13579") and not StaffLock(load_secret_hashes(pins), 60).unlock("1357")


def test_a_wrong_configuration_stops_the_kiosk_before_any_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "station.toml"
    bad.write_text('[station]\nid = "K 03"\n')
    assert main(["kiosk", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "station.id" in err and "health_code: required key is missing" in err


@pytest.mark.kivy
@pytest.mark.timeout(90)
def test_kiosk_process_runs_offscreen_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = drill_config(tmp_path / "station", "mqtt://127.0.0.1:9")
    log = tmp_path / "kiosk.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk_ui.cli", "kiosk", "--config", str(config), "--windowed"],
            cwd=ROOT,
            env=_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        db = tmp_path / "station" / "station.db"
        deadline = time.monotonic() + 30
        while not db.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1.5)
        assert proc.poll() is None, log.read_text()
        assert db.exists()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, log.read_text()


@pytest.mark.kivy
@pytest.mark.timeout(120)
def test_simulate_saves_a_picture_per_step(tmp_path: Path, broker: object) -> None:
    url = f"mqtt://127.0.0.1:{broker.port}"  # type: ignore[attr-defined]
    config = drill_config(tmp_path / "station", url)
    shots = tmp_path / "shots"
    drill = ROOT / "examples" / "drills" / "fever.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk_ui.cli",
            "simulate",
            "--config",
            str(config),
            "--scenario",
            str(drill),
            "--screenshots",
            str(shots),
        ],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(p.name for p in shots.glob("*.png"))
    assert names == [
        "step-001-idle.png",
        "step-002-result.png",
        "step-004-isolation.png",
        "step-006-staff.png",
        "step-008-result.png",
    ]
    assert TRUST["keys"]
