"""`station db`: the station database's figures, and the retention purge.

    station db stats --config FILE [--json]
    station db purge --config FILE [--json]
    station db salvage --config FILE [--json] DAMAGED

``purge`` deletes delivered events older than ``storage.retention_days`` and blanks the
residents' ids and masked names of older check-ins and closed tubes, keeping every count.
Undelivered events are never purged. It is meant to run daily on a station.

``salvage`` reads a damaged database the station moved aside at start
(``station.db.damaged-...``, see :mod:`edge_agent.damage`) and puts every undelivered event
it can read whole into the station's outbox, with its own id and seq, for the agent to send;
it exits 1 when nothing could be read. Running it twice adds nothing twice.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_agent import damage, outbox
from edge_agent.db import open_db
from firmware.config import DEFAULT_CONFIG_PATH, load_config
from kiosk_ui.core import reports, schema, store


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("stats", "outbox depth, check-ins, tubes and the file's size"),
        ("purge", "delete delivered events and personal data past storage.retention_days"),
        ("salvage", "send again the undelivered events of a damaged database moved aside"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="station configuration"
        )
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "salvage":
            p.add_argument("damaged", type=Path, metavar="DAMAGED", help="the file moved aside")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = open_db(config.storage.path)
    try:
        schema.install(db)
        now = time.time()
        result: dict[str, Any]
        if args.db_command == "salvage":
            result = asdict(damage.salvage(db, args.damaged, config.source))
        elif args.db_command == "purge":
            retention_s = config.storage.retention_days * 86400.0
            result = {
                "retention_days": config.storage.retention_days,
                **asdict(store.purge(db, retention_s, now)),
            }
        else:
            result = stats(db, config.storage.path, now)
    finally:
        db.conn.close()
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    if args.db_command == "salvage" and not result["recovered"]:
        return 1  # nothing could be read: the technician must know
    return 0


def stats(db: Any, path: Path, now: float) -> dict[str, Any]:
    o = outbox.stats(db, now)
    conn = db.conn

    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    tubes = reports.counts_by(conn, "SELECT state, count(*) FROM tubes GROUP BY 1", [])
    return {
        "last_seq": o.last_seq,
        "undelivered": o.depth,
        "oldest_undelivered_age_s": o.oldest_undelivered_age_s,
        "delivered_stored": one("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        "checkins": one("SELECT count(*) FROM checkins"),
        "checkins_today": int(
            conn.execute(
                f"SELECT count(*) {reports.DAY_CHECKINS}", (store.local_day(now),)
            ).fetchone()[0]
        ),
        "checkins_purged": one("SELECT count(*) FROM checkins WHERE purged_at IS NOT NULL"),
        "tubes": {s: tubes.get(s, 0) for s in ("open", "sealed", "voided", "dispatched")},
        "waiting": one("SELECT count(*) FROM waiting"),
        "file_bytes": sum(
            p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        ),
    }
