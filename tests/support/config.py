"""Writing station configuration files for tests."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from firmware.config import dump_toml

BASE: dict[str, Any] = {
    "station": {"id": "K03", "township": "T01", "role": "combined"},
    "health_code": {"trusted_keys": "issuers.jwks.json"},
    "sampling": {"pool_size": 10, "fever_threshold_c": 37.3, "resample_window_h": 12},
    "broker": {"url": "mqtt://127.0.0.1:1883", "allow_plaintext": True},
    "storage": {"path": "station.db"},
    "hardware": {"backend": "sim"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(
    directory: Path, overrides: dict[str, Any] | None = None, jwks: dict[str, Any] | None = None
) -> Path:
    """Write station.toml (and an issuer trust file) into ``directory``; returns its path."""
    data = _merge(BASE, overrides or {})
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "issuers.jwks.json"
    if not keys.exists() or jwks is not None:
        keys.write_text(json.dumps(jwks if jwks is not None else {"keys": []}))
    path = directory / "station.toml"
    path.write_text(dump_toml(data))
    tomllib.loads(path.read_text())  # the writer must produce TOML the station can read
    return path
