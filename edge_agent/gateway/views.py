"""What the township sees of its stations: each one's state, with the day's counts.

Read-only over the gateway's store (``store.dialect``, ``store.query``): per station
online/offline (the retained status and its Last Will), last seen, the last telemetry
(outbox depth, age of the oldest undelivered event, disk, CPU temperature, residents waiting,
standing alerts), the software release and the last ``seq`` stored, with a verdict against
the campaign's 30-minute upload rule (``judge``); ``board`` puts them together with the day's
counts (``counts.tally``) for the page and the JSON API.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edge_agent.gateway.counts import Counts, Day, ReadStore, StationKey, Tally, tally

LATE_AFTER_S = 1800.0  # the campaign's upload rule: every event at the gateway within 30 min


# --- the station list ---------------------------------------------------------------------


@dataclass(frozen=True)
class StationRecord:
    """What the store holds of a station: its last status, telemetry and progress."""

    township: str
    station: str
    online: bool | None = None
    status_at: float | None = None
    last_seen: float | None = None
    telemetry: Mapping[str, Any] | None = None
    telemetry_at: float | None = None
    release: str | None = None
    through: int = 0


STATES = ("late", "alert", "offline", "online", "unknown")  # the page's order, worst first


def judge(rec: StationRecord, now: float) -> tuple[str, list[str]]:
    """The station's state and, when it breaks the upload rule, why.

    ``late``: the oldest event it has not delivered was older than 30 minutes when it last
    said so, or nothing at all came from it for 30 minutes; then ``alert`` (a standing alert:
    a sensor, the disk, the link), ``offline`` (its status, or the broker's Last Will),
    ``online``, and ``unknown`` (events, but no status yet).
    """
    reasons: list[str] = []
    age = number((rec.telemetry or {}).get("oldest_undelivered_age_s"))
    if age is not None and age >= LATE_AFTER_S:
        reasons.append("undelivered")
    if rec.last_seen is None or now - rec.last_seen >= LATE_AFTER_S:
        reasons.append("silent")
    if reasons:
        return "late", reasons
    if rec.online is False:
        return "offline", reasons
    if alerts_of(rec):
        return "alert", reasons
    if rec.online:
        return "online", reasons
    return "unknown", reasons


def alerts_of(rec: StationRecord) -> list[str]:
    alerts = (rec.telemetry or {}).get("alerts")
    return sorted(alerts) if isinstance(alerts, dict) else []


def number(value: Any) -> int | float | None:
    """A figure a station reported, or None when it is not a finite number: telemetry comes
    from the network, and one NaN must not make the board unreadable JSON for every page."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def station_json(rec: StationRecord, counts: Counts, now: float) -> dict[str, Any]:
    state, reasons = judge(rec, now)
    tele = rec.telemetry or {}
    return {
        "township": rec.township,
        "station": rec.station,
        "state": state,
        "late": reasons,
        "online": rec.online,
        "status_at": rec.status_at,
        "last_seen": rec.last_seen,
        "silent_s": None if rec.last_seen is None else round(max(0.0, now - rec.last_seen), 1),
        "release": rec.release,
        "through": rec.through,
        "telemetry_at": rec.telemetry_at,
        "outbox_depth": number(tele.get("outbox_depth")),
        "oldest_undelivered_age_s": number(tele.get("oldest_undelivered_age_s")),
        "disk_free_mb": number(tele.get("disk_free_mb")),
        "cpu_temperature_c": number(tele.get("cpu_temperature_c")),
        "queue_length": number(tele.get("kiosk_queue_length")),
        "alerts": alerts_of(rec),
        "counts": counts.as_json(),
    }


def order_key(item: Mapping[str, Any]) -> tuple[int, float, str, str]:
    """Worst state first; among late stations, the longest silent first."""
    silent = item.get("silent_s")
    return (
        STATES.index(str(item["state"])),
        -(silent if isinstance(silent, int | float) else math.inf),
        str(item["township"]),
        str(item["station"]),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _telemetry(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    parsed = json.loads(value) if isinstance(value, str | bytes) else value
    return parsed if isinstance(parsed, dict) else None


def records(store: ReadStore, township: str | None = None) -> Iterator[StationRecord]:
    """Every station the gateway has heard of: by status or telemetry, or by events alone."""
    where, params = ("WHERE township = %s", [township]) if township is not None else ("", [])
    rows = store.query(f"SELECT township, station, through FROM progress {where}", params)
    through = {(str(t), str(s)): int(n) for t, s, n in rows}
    seen: set[StationKey] = set()
    for row in store.query(
        "SELECT township, station, online, status_at, last_seen, telemetry, telemetry_at, "
        f"release FROM stations {where}",
        params,
    ):
        key = (str(row[0]), str(row[1]))
        seen.add(key)
        yield StationRecord(
            key[0],
            key[1],
            None if row[2] is None else bool(row[2]),
            _float(row[3]),
            _float(row[4]),
            _telemetry(row[5]),
            _float(row[6]),
            None if row[7] is None else str(row[7]),
            through.get(key, 0),
        )
    for key, n in through.items():
        if key not in seen:
            yield StationRecord(key[0], key[1], through=n)


# --- the board: what the page and the API show ---------------------------------------------


def hourly_json(tally_: Tally, key: StationKey | None = None) -> list[dict[str, Any]]:
    return [
        {"hour": h, "checkins": c.checkins, "sampled": c.sampled, "counts": c.as_json()}
        for h, c in enumerate(tally_.hourly(key))
    ]


def board(store: ReadStore, day: Day, now: float, township: str | None = None) -> dict[str, Any]:
    """Stations (worst first), the township's totals and its hours, for one day."""
    counted = tally(store, day, township)
    stations = sorted(
        (
            station_json(rec, counted.station((rec.township, rec.station)), now)
            for rec in records(store, township)
        ),
        key=order_key,
    )
    states = dict.fromkeys(STATES, 0)
    for s in stations:
        states[s["state"]] += 1
    return {
        "day": str(day),
        "generated_at": now,
        "late_after_s": LATE_AFTER_S,
        "stations": stations,
        "totals": {
            "stations": len(stations),
            "states": states,
            "counts": counted.total().as_json(),
        },
        "hourly": hourly_json(counted),
    }
