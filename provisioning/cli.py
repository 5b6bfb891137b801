"""`station provision apply|rollback INVENTORY`: set up, update and roll back stations."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from provisioning.fleet import run_fleet, summary_table
from provisioning.inventory import load_inventory


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    apply = sub.add_parser("apply", help="bring stations to the inventory's state and release")
    rollback = sub.add_parser("rollback", help="switch stations back to their previous release")
    for p in (apply, rollback):
        p.add_argument("inventory", type=Path, metavar="INVENTORY", help="the fleet's TOML file")
        p.add_argument(
            "--limit",
            action="append",
            metavar="ID",
            help="only these stations (repeat, or separate with commas)",
        )
        p.add_argument(
            "--parallel", type=int, default=8, metavar="N", help="stations at once (default 8)"
        )
        p.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    apply.add_argument("--dry", action="store_true", help="change nothing; show what would change")
    apply.add_argument("--diff", action="store_true", help="show the diff of every changed file")


def _print_details(report: dict[str, Any], diffs: bool, verbose: int) -> None:
    if not report.get("changes") and not report.get("notes") and not diffs:
        return
    verb = "would change" if report.get("dry") else "changed"
    for change in report.get("changes", []):
        print(f"[{report['station']}] {verb}: {change['operation']}")
        if verbose:
            for command in change["commands"]:
                print(f"    {command}")
    for note in report.get("notes", []):
        print(f"[{report['station']}] note: {note}")
    if diffs:
        for text in report.get("diffs", {}).values():
            print(text.rstrip("\n"))


def run(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory)
    limit = [i.strip() for item in (args.limit or []) for i in item.split(",") if i.strip()]
    stations = inventory.select(limit)
    verbose = int(getattr(args, "verbose", 0))
    dry = bool(getattr(args, "dry", False))
    diff = bool(getattr(args, "diff", False))

    def on_log(station_id: str, text: str) -> None:
        if verbose:
            for line in text.rstrip("\n").splitlines():
                print(f"[{station_id}] {line}", file=sys.stderr)

    reports = run_fleet(
        inventory,
        stations,
        args.action,
        parallel=max(1, args.parallel),
        dry=dry,
        diff=diff,
        verbosity=verbose,
        on_log=on_log,
    )
    for report in reports:
        _print_details(report, dry or diff, verbose)
    print(summary_table(reports))
    if args.report is not None:
        args.report.write_text(
            json.dumps({"action": args.action, "stations": reports}, indent=2, ensure_ascii=False)
            + "\n",
            encoding="utf-8",
        )
    return 0 if all(r["ok"] for r in reports) else 1
