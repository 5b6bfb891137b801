"""A day at the township gateway, made by the station's own code paths.

``station_day`` runs a real ``Station`` (its SQLite file, its rules, its outbox) through a
morning with every kind of fact the gateway counts; ``deliver`` hands the committed events to
a gateway store through the gateway's own intake, as the consumer would. The figures the day
must produce are in ``EXPECTED`` (per local hour in Asia/Shanghai, where 08:00 UTC is 16:00).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.gateway.intake import Intake
from edge_agent.gateway.store import GatewayStore
from firmware.config import load_config
from kiosk_ui.core.station import Station
from tests.support.config import write_config
from tests.support.station import T0, Clock, rejected, resident

TZ = ZoneInfo("Asia/Shanghai")
DAY = "2026-11-23"
FIRST_HOUR, SECOND_HOUR = 16, 17  # T0 (08:00 UTC) and an hour later, in Shanghai

# What station_day commits, counted: per local hour, then the day.
EXPECTED: dict[int, dict[str, Any]] = {
    FIRST_HOUR: {
        "checkins": 6,
        "decisions": {"pool": 2, "single": 1, "isolate": 2, "refer": 1},
        "lanes": {"main": 1, "green": 1, "single": 1, "isolation": 2, "staff": 1},
        "fevers": 1,
        "red_codes": 1,
        "tubes_opened": 1,
        "tubes_sealed": 1,
        "tubes_voided": 0,
        "boxes_dispatched": 0,
        "sampled": 2,
    },
    SECOND_HOUR: {
        "checkins": 3,
        "decisions": {"pool": 3, "single": 0, "isolate": 0, "refer": 0},
        "lanes": {"main": 3, "green": 0, "single": 0, "isolation": 0, "staff": 0},
        "fevers": 0,
        "red_codes": 0,
        "tubes_opened": 2,
        "tubes_sealed": 1,
        "tubes_voided": 1,
        "boxes_dispatched": 1,
        "sampled": 1,
    },
}


def day_total() -> dict[str, Any]:
    a, b = EXPECTED[FIRST_HOUR], EXPECTED[SECOND_HOUR]
    out: dict[str, Any] = {}
    for k, v in a.items():
        out[k] = {n: v[n] + b[k][n] for n in v} if isinstance(v, dict) else v + b[k]
    return out


def open_station_at(directory: Path, station: str, township: str, clock: Clock) -> Station:
    path = write_config(
        directory,
        {"station": {"id": station, "township": township}, "sampling": {"pool_size": 10}},
    )
    return Station.open(load_config(path), None, clock=clock)


def station_day(
    directory: Path, station: str = "K03", township: str = "T01", start: float = T0
) -> list[dict[str, Any]]:
    """An hour and a bit at one station; the events it committed, in seq order."""
    directory.mkdir(parents=True, exist_ok=True)
    clock = Clock(start)
    s = open_station_at(directory, station, township, clock)
    try:
        s.scan("TB2026112300001", "S07")  # 16:00
        s.check_in(resident(f"{station}-a"), [36.5])  # pool, main
        s.check_in(resident(f"{station}-b", cat=["child"]), [36.4])  # pool, green lane
        s.check_in(resident(f"{station}-c", "yellow"), [36.6])  # single desk, waits
        s.check_in(resident(f"{station}-d", "red"))  # isolate: red code
        s.check_in(resident(f"{station}-e"), [37.6, 38.1])  # isolate: fever
        s.check_in(rejected("expired"))  # refer, staff
        clock.advance(20 * 60)
        s.seal("S07")  # 16:20, two residents sampled
        clock.advance(50 * 60)  # 17:10
        s.check_in(resident(f"{station}-g"), [36.5])  # waits for a tube
        s.check_in(resident(f"{station}-h"), [36.5])
        s.scan("TB2026112300002", "S07")  # g and h join it
        s.void("dropped", "S07")
        s.scan("TB2026112300003", "S07")
        s.check_in(resident(f"{station}-i"), [36.5])
        s.seal("S07")
        s.dispatch("BX20261123A", "S07")
        rows = s.db.conn.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
        return [json.loads(p) for (p,) in rows]
    finally:
        s.close()


def deliver(store: GatewayStore, events: Iterable[dict[str, Any]], now: float) -> None:
    """Store events as the gateway's consumer does: through its intake, in one batch."""
    intake = Intake()
    batch = []
    for ev in events:
        _, _, township, station = str(ev["source"]).split(":")
        batch.append(intake.event(f"sampling/{township}/{station}/events", json.dumps(ev).encode()))
    store.store(batch, now)
