"""Operations: the gateway's systemd unit, `station gateway status`, the guide."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from edge_agent.gateway import open_store
from edge_agent.gateway.status import render
from edge_agent.gateway.store import StationState
from tests.support.gateway_events import stored_event

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT = "sampling-gateway@.service"


def unit_text() -> str:
    return resources.files("edge_agent.gateway").joinpath(UNIT).read_text()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    station = tmp_path / "venv" / "bin" / "station"  # verify wants ExecStart to exist
    station.parent.mkdir(parents=True)
    station.write_text("#!/bin/sh\nexit 0\n")
    station.chmod(0o755)
    text = unit_text()
    assert "/opt/sampling-gateway/venv/bin/station gateway " in text
    (tmp_path / UNIT).write_text(text.replace("/opt/sampling-gateway/venv", str(tmp_path / "venv")))
    for name in (UNIT, "sampling-gateway@2.service"):
        proc = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


def test_the_unit_runs_the_gateway_as_its_own_user_and_restarts() -> None:
    text = unit_text()
    for line in (
        "User=sampling-gateway",
        "EnvironmentFile=/etc/sampling-gateway/gateway.env",
        "Restart=always",
        "--client-id gateway-%H-%i",
        "NoNewPrivileges=yes",
    ):
        assert line in text.splitlines() or f" {line} " in text, line


def test_status_shows_each_station_plainly_and_as_json(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    with open_store(db) as store:
        store.store([stored_event(s) for s in (1, 2, 3, 5)], 1_790_000_000.0)
        store.record_station("T01", "K03", "status", {"state": "online"}, 1_790_000_010.0)
        store.record_station("T01", "K07", "status", {"state": "offline"}, 1_790_000_020.0)
    table = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "gateway", "status", "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert table[0].split() == [
        "station",
        "through",
        "last",
        "seq",
        "waiting",
        "link",
        "last",
        "seen",
    ]
    assert table[1].split()[:5] == ["T01/K03", "3", "5", "1", "online"]
    assert table[2].split()[:5] == ["T01/K07", "0", "0", "0", "offline"]
    assert table[2].split()[5] == "never" and len(table) == 3
    out = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "gateway", "status", "--db", str(db), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert json.loads(out)[0] == {
        "township": "T01",
        "station": "K03",
        "through": 3,
        "last_seq": 5,
        "waiting": 1,
        "online": True,
        "last_seen": 1_790_000_010.0,
    }


def test_status_of_an_empty_store_says_so() -> None:
    assert "no station has been heard from yet" in render([], 0.0)
    row = render([StationState("T01", "K03", 1, 1, 0, None, None)], 0.0).splitlines()[1]
    assert "unknown" in row and "never" in row


def test_the_guide_covers_the_server_and_is_linked() -> None:
    guide = (ROOT / "docs" / "gateway.md").read_text()
    for needle in (
        "apt-get install",
        "postgresql",
        "createuser",
        "mosquitto",
        "acl.conf.in",
        "sampling-gateway@.service",
        "pg_dump",
        ".backup",
        "station gateway status",
    ):
        assert needle in guide, needle
    readme = (ROOT / "README.md").read_text()
    assert "(docs/gateway.md)" in readme and "`station gateway`" in readme
