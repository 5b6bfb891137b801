"""The station's health as the agent reports it: telemetry, the ``storage_low`` alert, and
the agent's own rows in ``agent_state`` (its link and its alerts, which ``station agent
status``, the kiosk and the telemetry read).

Plain functions over the outbox and the file system; the agent decides when to call them.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_agent import outbox, recall_list
from edge_agent.db import Database, write_transaction
from edge_agent.errors import StorageError
from firmware.config import StationConfig

log = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
STORAGE_LOW = "storage_low"
STORAGE_MARGIN_MB = 16.0  # storage_low clears this far (or a quarter of the floor) above it


def record_state(db: Database, values: dict[str, Any]) -> None:
    """Write the agent's rows in ``agent_state``; on a full disk this only logs."""
    try:
        with write_transaction(db) as conn:
            for k, v in values.items():
                outbox.set_state(conn, k, v)
    except StorageError as exc:
        log.warning("cannot record the agent state: %s", exc)


def record_gateway_time(db: Database, said: object, station_now: float) -> None:
    """Record the gateway's time on an ack (``said``) and this station's clock as it came
    (the ``clock.gateway`` row the kiosk's clock judge reads); a time that is not RFC 3339
    is logged and ignored."""
    gateway = outbox.parse_rfc3339(said)
    if gateway is None:
        log.warning("the gateway's time on an ack is not an RFC 3339 time, ignored: %r", said)
        return
    record_state(
        db,
        {
            outbox.GATEWAY_TIME_KEY: {
                "gateway": outbox.rfc3339(gateway),
                "station": outbox.rfc3339(station_now),
                "offset_s": round(gateway - station_now, 3),
            }
        },
    )


def link_state(state: str, error: str | None, broker_url: str) -> dict[str, Any]:
    """The ``link.*`` rows: online, offline, connecting or stopped, since when, and why."""
    return {
        "link.state": state,
        "link.since": outbox.rfc3339(time.time()),
        "link.error": error,
        "link.broker": broker_url,
        "agent.pid": os.getpid(),
    }


def alert(kind: str, reason: str, seq: int | None) -> dict[str, Any]:
    """The ``alert.<kind>`` row of an alert the agent raises (``connect``, ``delivery``,
    ``ack``); it stands until the agent writes None there."""
    return {f"alert.{kind}": {"at": outbox.rfc3339(time.time()), "seq": seq, "reason": reason}}


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature in °C from the kernel's thermal zone, or None where there is none."""
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def free_mb(config: StationConfig) -> float | None:
    """Free space on the file system of the station's database, in MiB."""
    try:
        return shutil.disk_usage(config.storage.path.parent).free / 2**20
    except OSError as exc:
        log.warning("cannot read the free space of the station's disk: %s", exc)
        return None


@functools.cache
def release(module_file: str = __file__) -> str:
    """The software release this agent runs, as the township's station list shows it.

    Provisioning installs each release in a directory of its own,
    ``/opt/sampling-station/releases/<name>/``: that name, when the agent runs from one;
    otherwise (a development checkout, a drill) the installed package's version.
    """
    parts = Path(module_file).resolve().parts
    if "releases" in parts[:-1]:
        return parts[parts.index("releases") + 1]
    try:
        return metadata.version("sampling-station")
    except metadata.PackageNotFoundError:
        return "unknown"


def telemetry(db: Database, config: StationConfig) -> dict[str, Any]:
    """The body of a telemetry message (docs/asyncapi.yaml); StorageError when unreadable."""
    st = outbox.stats(db)
    state = outbox.read_state(db)
    free = free_mb(config)
    queue_len = state.get(outbox.KIOSK_QUEUE_KEY)
    alerts = outbox.standing_alerts(db)
    return {
        "at": outbox.rfc3339(time.time()),
        "outbox_depth": st.depth,
        "oldest_undelivered_age_s": None
        if st.oldest_undelivered_age_s is None
        else round(st.oldest_undelivered_age_s, 1),
        "last_seq": st.last_seq,
        "delivered_through": outbox.delivered_through(db),
        "disk_free_mb": None if free is None else round(free, 1),
        "cpu_temperature_c": cpu_temperature(),
        "kiosk_queue_length": queue_len if isinstance(queue_len, int) else None,
        "recall_version": recall_list.version(db.conn),
        "release": release(),
        "alerts": alerts,
    }


def check_storage(db: Database, config: StationConfig) -> bool:
    """Raise ``storage_low`` when free space falls below ``storage.min_free_mb``; clear it
    once there is a margin above it again (so a disk at the line does not flap). True when
    an event was written to the outbox."""
    floor = config.storage.min_free_mb
    free = free_mb(config) if floor > 0 else None
    if free is None:
        return False
    low = free < floor
    if not low and free < floor + max(STORAGE_MARGIN_MB, floor / 4):
        return False  # between the floor and the margin: whatever stands, stands
    try:
        if (outbox.active_alert(db.conn, STORAGE_LOW) is not None) == low:
            return False  # as it should be: no write
        with write_transaction(db) as conn:
            event = outbox.standing_alert(
                conn,
                source=config.source,
                kind=STORAGE_LOW,
                stands=low,
                detail=f"{free:.1f} MB free, below storage.min_free_mb {floor} MB"
                if low
                else f"{free:.1f} MB free",
            )
    except (StorageError, sqlite3.Error) as exc:
        # A disk too full to record that it is full: the telemetry's disk_free_mb and the
        # kiosk's storage fault say it; this is tried again at the next check.
        log.warning("storage_low not recorded: %s", exc)
        return False
    if event is None:
        return False
    log.warning("%s: %s", event["type"], event["data"]["detail"])
    return True
