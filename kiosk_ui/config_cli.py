"""`station config check`: validate a configuration file before installing it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from firmware.config import DEFAULT_CONFIG_PATH, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"], help="what to do with the file")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    parser.add_argument("--json", action="store_true", help="print the effective values")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(f"{args.config}: valid (station {cfg.station.township}/{cfg.station.id})")
    return 0
