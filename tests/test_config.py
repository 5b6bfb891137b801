from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import load_config
from firmware.errors import ConfigError
from tests.support.config import write_config


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    assert cfg.sampling.pool_size == 10
    assert cfg.sampling.fever_threshold_c == 37.3
    assert cfg.storage.path == tmp_path / "station.db"
    assert cfg.health_code.trusted_keys == tmp_path / "issuers.jwks.json"
    assert cfg.source == "urn:sampling:T01:K03"
    assert cfg.topic_prefix == "sampling/T01/K03"
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.tls) == ("127.0.0.1", 1883, False)


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"sampling": {"pool_sise": 10}}, "sampling.pool_sise", "unknown key"),
        ({"sampling": {"pool_size": 25}}, "sampling.pool_size", "less than or equal to 20"),
        ({"station": {"id": "K 03"}}, "station.id", "pattern"),
        ({"broker": {"url": "mqtt://gw:1883", "allow_plaintext": False}}, "broker", "mqtts://"),
        ({"hardware": {"backend": "pc"}}, "hardware.backend", "'pi' or 'sim'"),
        ({"hardware": {"lights": {"buzzer": 17}}}, "hardware.lights", "GPIO 17"),
        ({"hardware": {"lights": {"buzzer": 40}}}, "hardware.lights", "GPIO 0 to 27"),
        ({"extra": {"x": 1}}, "extra", "unknown key"),
    ],
)
def test_wrong_values_name_the_key(tmp_path: Path, overrides: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, overrides))
    text = str(info.value)
    assert f"{key}:" in text
    assert words in text


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[station\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_bytes(b"\xff\xfe[station]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_missing_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text('[station]\nid = "K03"\ntownship = "T01"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "health_code: required key is missing" in str(info.value)
    assert "broker: required key is missing" in str(info.value)
