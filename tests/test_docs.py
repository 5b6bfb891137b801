"""The documentation keeps up with the code: every configuration key and every subcommand."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from firmware.config import StationConfig
from kiosk_ui.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _model_keys(ann, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_configuration_key_is_documented_and_nothing_else() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.MULTILINE))
    assert documented == _model_keys(StationConfig)


def test_every_subcommand_is_in_the_docs() -> None:
    docs = "\n".join(p.read_text() for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")])
    missing = [name for name in COMMANDS if f"station {name}" not in docs]
    assert missing == []


def test_readme_names_the_ci_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in readme
    assert "exec scripts/test" in ci
