"""`station agent`: run the edge agent, or (`station agent status`) show its state."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from edge_agent import outbox
from edge_agent.agent import Agent, build_when_possible
from edge_agent.db import open_db
from firmware.config import DEFAULT_CONFIG_PATH, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=["run", "status"],
        default="run",
        help="run the agent (default), or print the outbox and link state for a technician",
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="station configuration file"
    )
    parser.add_argument("--json", action="store_true", help="status: print JSON")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.action == "status":
        return _status(config.storage.path, args.json)
    stop = threading.Event()
    agent: Agent | None = None

    def _stop_now() -> None:
        stop.set()
        if agent is not None:
            agent.request_stop()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        # The handler runs on the main thread between two bytecodes, perhaps while that thread
        # holds the lock of the queue or event it waits on; setting them here could wait on
        # that lock for ever. Another thread takes the locks instead.
        threading.Thread(target=_stop_now, name="agent-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent = build_when_possible(config, stop)
    if agent is None:
        return 0
    if stop.is_set():
        agent.request_stop()
    agent.run()
    return 0


def status(db_path: Path) -> dict[str, Any]:
    """What a technician needs: how much waits, since when, and how the link is."""
    db = open_db(db_path)
    try:
        outbox.install(db)
        st = outbox.stats(db)
        state = outbox.read_state(db)
        return {
            "database": str(db_path),
            "last_seq": st.last_seq,
            "delivered_through": outbox.delivered_through(db),
            "outbox_depth": st.depth,
            "oldest_undelivered_age_s": st.oldest_undelivered_age_s,
            "link": {k.removeprefix("link."): v for k, v in state.items() if k.startswith("link.")},
            "alerts": outbox.standing_alerts(db),
            "kiosk_queue_length": state.get(outbox.KIOSK_QUEUE_KEY),
        }
    finally:
        db.conn.close()


def _status(db_path: Path, as_json: bool) -> int:
    if not db_path.exists():
        print(f"no station database at {db_path} yet", file=sys.stderr)
        return 1
    s = status(db_path)
    if as_json:
        print(json.dumps(s, indent=2, sort_keys=True))
        return 0
    age = s["oldest_undelivered_age_s"]
    link = s["link"]
    print(f"database            {s['database']}")
    print(f"events              {s['last_seq']} (delivered through seq {s['delivered_through']})")
    print(f"waiting to deliver  {s['outbox_depth']}")
    print(f"oldest waiting      {'-' if age is None else _age(age)}")
    print(
        f"link                {link.get('state', 'unknown')} since {link.get('since', '-')}"
        f" ({link.get('broker', '-')})"
    )
    if link.get("error"):
        print(f"last link error     {link['error']}")
    if s["kiosk_queue_length"] is not None:
        print(f"kiosk queue         {s['kiosk_queue_length']}")
    for kind, alert in sorted(s["alerts"].items()):
        print(f"ALERT {kind:<13} {alert}")
    return 0


def _age(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f" ({seconds:.0f} s)"
