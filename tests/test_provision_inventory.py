"""The inventory is validated before anything connects; every error names station and key."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from firmware.config import dump_toml
from kiosk_ui.cli import main
from provisioning.errors import InventoryError
from provisioning.host import HostReport
from provisioning.inventory import (
    Fleet,
    MqttCredentials,
    Release,
    Station,
    load_inventory,
    parse_inventory,
)

ROOT = Path(__file__).resolve().parents[1]


def _example(tmp_path: Path) -> Path:
    """examples/fleet.toml with the files it names, and its card mounted in tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "fleet.toml", tmp_path / "fleet.toml")
    shutil.copy(ROOT / "examples" / "demo-issuers.jwks.json", tmp_path)
    fleet = tmp_path / "fleet"
    (fleet / "dist").mkdir(parents=True, exist_ok=True)
    for name in ("known_hosts", "technician_ed25519", "gateway-ca.crt", "K01.crt", "K01.key",
                 "K02.password", "K03.crt", "K03.key",
                 "dist/sampling_station-0.1.0-py3-none-any.whl"):  # fmt: skip
        (fleet / name).write_text("x\n")
    text = (tmp_path / "fleet.toml").read_text()
    (tmp_path / "card").mkdir(exist_ok=True)
    (tmp_path / "fleet.toml").write_text(text.replace("/media/rootfs", str(tmp_path / "card")))
    return tmp_path / "fleet.toml"


def test_the_example_inventory_is_valid(tmp_path: Path) -> None:
    inv = load_inventory(_example(tmp_path))
    assert [s.id for s in inv.stations] == ["K01", "K02", "K03"]
    k01, k02, k03 = inv.stations
    assert (k01.port, k02.port, k01.user) == (22, 2222, "pi")
    assert k01.use_sudo and not k03.use_sudo
    assert (k01.purge_at, k03.purge_at) == ("02:30", "02:30")  # from [fleet.defaults]
    assert k01.effective_mode == "live" and k03.effective_mode == "image" and k03.local
    assert inv.configs["K01"].station.role == "checkin"
    assert inv.configs["K01"].hardware.lights.main_red == 5
    assert inv.configs["K02"].broker.password_file == Path("/etc/sampling-station/mqtt/password")
    assert inv.configs["K02"].broker.username == "K02"
    assert str(inv.configs["K03"].broker.key_file) == "/etc/sampling-station/mqtt/client.key"
    assert inv.fleet.release.release_name().startswith("0.1.0-")
    assert k01.key == tmp_path / "fleet" / "technician_ed25519"


def _problems(
    tmp_path: Path, edit: dict[str, Any] | None = None, station: dict[str, Any] | None = None
) -> str:
    path = _example(tmp_path)
    data = tomllib.loads(path.read_text())
    for key, value in (edit or {}).items():
        data["fleet"][key] = value
    for key, value in (station or {}).items():
        data["station"][0][key] = value
    with pytest.raises(InventoryError) as info:
        parse_inventory(data, tmp_path, str(path))
    return str(info.value)


def test_an_unknown_station_key_names_the_station_and_the_key(tmp_path: Path) -> None:
    text = _problems(tmp_path, station={"adress": "10.0.0.1"})
    assert "station K01: adress: unknown key" in text


def test_a_wrong_station_configuration_names_the_station_and_the_key(tmp_path: Path) -> None:
    text = _problems(tmp_path, station={"config": {"broker": {"urll": "x"}}})
    assert "station K01: config.broker.urll: unknown key" in text
    text = _problems(tmp_path, station={"config": {"hardware": {"lights": {"buzzer": 17}}}})
    assert "station K01: config.hardware.lights: buzzer and main_red both use GPIO 17" in text
    text = _problems(tmp_path, station={"config": {"broker": {"url": "http://x"}}})
    assert "station K01: config.broker.url: must look like" in text


def test_keys_that_provisioning_sets_are_refused_in_the_station_configuration(
    tmp_path: Path,
) -> None:
    text = _problems(tmp_path, station={"config": {"broker": {"password_file": "/tmp/pw"}}})
    assert "station K01: config.broker.password_file: provisioning sets this key" in text
    assert "mqtt.password_file" in text


def test_files_are_checked_before_connecting(tmp_path: Path) -> None:
    assert "fleet.known_hosts: cannot read" in _problems(tmp_path, {"known_hosts": "nope"})
    text = _problems(tmp_path, station={"key": "missing_key"})
    assert "station K01: key: cannot read the SSH key" in text
    text = _problems(tmp_path, station={"mqtt": {"ca_file": "nope.crt"}})
    assert "station K01: mqtt.ca_file: cannot read" in text
    text = _problems(tmp_path, station={"mqtt": {"cert_file": "fleet/K01.crt"}})
    assert "station K01: mqtt: Value error, cert_file and key_file go together" in text or (
        "station K01: mqtt: cert_file and key_file go together" in text
    )
    (tmp_path / "bad.json").write_text("{")
    assert "fleet.trust_file" in _problems(tmp_path, {"trust_file": "bad.json"})


def test_duplicate_ids_and_bad_values(tmp_path: Path) -> None:
    assert "station K01: id: another station has the same id" in _problems(
        tmp_path, station={"id": "K02"}
    ).replace("station K02: id", "station K01: id")
    assert "station K01: port:" in _problems(tmp_path, station={"port": 70000})
    assert "station K01: packages.0:" in _problems(tmp_path, station={"packages": ["Bad Name"]})
    for when in ("25:00", "3:00", "03:00:00"):
        assert "station K01: purge_at:" in _problems(tmp_path, station={"purge_at": when})


def test_the_cli_reports_inventory_errors_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _example(tmp_path)
    data = tomllib.loads(path.read_text())
    data["station"][1]["config"] = {"sampling": {"pool_size": 99}}
    path.write_text(dump_toml(data))
    assert main(["provision", "apply", str(path)]) == 2
    err = capsys.readouterr().err
    assert "station K02: config.sampling.pool_size" in err
    assert main(["provision", "apply", str(_example(tmp_path / "b")), "--limit", "K99"]) == 2
    assert "--limit K99: no such station" in capsys.readouterr().err


def test_a_missing_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read the file"):
        load_inventory(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[fleet\n")
    with pytest.raises(InventoryError, match="not valid TOML"):
        load_inventory(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text(json.dumps("x")[1:-1] + " = 1\n")
    with pytest.raises(InventoryError, match="x: unknown top-level key"):
        load_inventory(tmp_path / "empty.toml")


def test_every_inventory_key_and_report_field_is_documented() -> None:
    text = (ROOT / "docs" / "provisioning.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)? \|", text, flags=re.M))
    names = {n for pair in documented for n in pair if n}
    for model in (Fleet, Release, Station, MqttCredentials):
        missing = set(model.model_fields) - names
        assert missing == set(), f"{model.__name__}: {missing}"
    fields = set(HostReport("K01", "a:22", "apply", dry=False).to_json())
    assert fields - names == set()
    assert "station provision apply" in text and "station provision rollback" in text
