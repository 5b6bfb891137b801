"""`station selftest --config FILE [--json] [--interactive]`: check each part of a station.

Prints one line per check (or, with ``--json``, ``{"ok": bool, "checks": [{"name", "status",
"detail"}]}`` for provisioning) and exits 1 when any check failed, 0 otherwise.
``--write-test-card FILE`` writes the printable test card (PNG) and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firmware.config import DEFAULT_CONFIG_PATH, load_config
from firmware.errors import ConfigError
from hardware_tests.selftest import Check, SelfTest, summary
from hardware_tests.testcard import write_test_card

_MARK = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="station configuration file"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="ask the technician to confirm the lights, hold up the test card and scan",
    )
    parser.add_argument(
        "--write-test-card", type=Path, metavar="PNG", help="write the test card and exit"
    )


def render(results: list[Check]) -> str:
    width = max(len(c.name) for c in results)
    lines = [f"  {_MARK[c.status]}  {c.name:<{width}}  {c.detail}" for c in results]
    counts = {s: sum(c.status == s for c in results) for s in ("pass", "fail", "skip")}
    lines.append(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.write_test_card is not None:
        path = write_test_card(args.write_test_card)
        print(f"test card written to {path}")
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        results = [Check("configuration", "fail", str(exc).replace("\n", " "))]
    else:
        results = SelfTest(config, interactive=args.interactive).run()
    if args.json:
        print(json.dumps(summary(results), ensure_ascii=False, indent=2))
    else:
        print(f"station selftest: {args.config}")
        print(render(results))
    sys.stdout.flush()
    return 0 if summary(results)["ok"] else 1
