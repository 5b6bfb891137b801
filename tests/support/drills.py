"""Station configurations for drills: the demo issuer's trust file and an ID hash key."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[2]
DRILLS = sorted((ROOT / "examples" / "drills").glob("*.json"))
TRUST: dict[str, Any] = json.loads((ROOT / "examples" / "demo-issuers.jwks.json").read_text())


def drill_config(directory: Path, broker_url: str, **over: Any) -> Path:
    """station.toml for a drill in ``directory``: sim hardware, the demo trust file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "id.key").write_text(secrets.token_urlsafe(32))
    overrides: dict[str, Any] = {
        "broker": {"url": broker_url, "allow_plaintext": True},
        "kiosk": {"id_hash_key_file": "id.key"},
        **over,
    }
    return write_config(directory, overrides, jwks=TRUST)
