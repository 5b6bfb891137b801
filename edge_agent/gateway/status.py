"""`station gateway status`: per station, what is acknowledged, what waits, and whether it is
online, for township IT (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from edge_agent.gateway.store import StationState, open_store
from firmware.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", dest="status_db", help="the store: a SQLite file or a postgresql:// URL"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def _seen(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    ago = max(0.0, now - at)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"{when} ({ago:.0f} s ago)"


def render(states: list[StationState], now: float) -> str:
    """The table township IT reads."""
    header = f"{'station':<20} {'through':>8} {'last seq':>8} {'waiting':>7}  {'link':<8} last seen"
    lines = [header]
    for s in states:
        link = {True: "online", False: "offline", None: "unknown"}[s.online]
        lines.append(
            f"{s.township + '/' + s.station:<20} {s.through:>8} {s.last_seq:>8} "
            f"{s.waiting:>7}  {link:<8} {_seen(s.last_seen, now)}"
        )
    if not states:
        lines.append("no station has been heard from yet")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    target = args.status_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    with open_store(target) as store:
        states = store.station_states()
    if args.json:
        print(json.dumps([asdict(s) for s in states], indent=2, sort_keys=True))
    else:
        print(render(states, time.time()))
    return 0
