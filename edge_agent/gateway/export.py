"""A day's specimens for the platform above: FHIR R5 or CSV, pseudonymous subs only.

FHIR (``fhir.resources``, R5, pydantic 2): one ``Bundle`` of type ``collection``. Each
resident's swab is a ``Specimen`` whose ``subject`` is an identifier (system
``urn:sampling:sub``, the code's pseudonymous ``sub``, never a name); each pooled tube is a
``Specimen`` with ``combined = pooled`` whose ``parent``s are its members' specimens, with the
tube's barcode as ``accessionIdentifier``, ``collection.collectedDateTime`` the sealing time,
``receivedTime`` the lab's receipt and a ``note`` with the lab's current result. A single
tube is one ``Specimen`` with the resident as ``subject`` and no parent. Every resource is
built by the library's models, so a value of the wrong type never leaves the gateway; the
code values the models do not check (``combined``, ``status``) are checked here.

CSV: one row per member of each tube, see ``CSV_COLUMNS``.

A day is the calendar day in the township's time zone (China Standard Time by default) in
which the tube was sealed. Voided tubes are left out.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import uuid
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.specimen import Specimen

from edge_agent.gateway.lab import TUBE_COLUMNS, Tube, lock, sync, tube_from_row
from edge_agent.gateway.results import CHINA
from edge_agent.gateway.store import GatewayStore, Tx, open_store
from firmware.errors import ConfigError

SUB_SYSTEM = "urn:sampling:sub"
TUBE_SYSTEM = "urn:sampling:tube"
NAMESPACE = uuid.UUID("6f1c2f4e-9b1d-4c55-9a38-3d3f0b2a7e11")  # stable urn:uuid per specimen
CSV_COLUMNS = (
    "tube",
    "mode",
    "township",
    "station",
    "position",
    "sub",
    "sealed_at",
    "box",
    "dispatched_at",
    "received_at",
    "result",
    "reported_at",
)
COMBINED = ("grouped", "pooled")  # the R5 value set of Specimen.combined


def day_tubes(store: GatewayStore, day: date, zone: tzinfo = CHINA) -> list[tuple[Tube, Any]]:
    """The tubes sealed on ``day`` (not voided) with their current result (or None)."""
    store.write(_sync)
    start = datetime.combine(day, time(0), zone).timestamp()
    end = start + timedelta(days=1).total_seconds()
    rows = store.query(
        f"SELECT {TUBE_COLUMNS} FROM lab_tubes WHERE sealed_at >= %s AND sealed_at < %s "
        "AND voided_at IS NULL ORDER BY sealed_at, tube",
        (start, end),
    )
    found = [tube_from_row(r) for r in rows]
    results: dict[str, tuple[str, float]] = {}
    for r in store.query(
        "SELECT r.tube, r.result, r.reported_at FROM lab_results r JOIN lab_tubes t "
        "ON t.tube = r.tube WHERE t.sealed_at >= %s AND t.sealed_at < %s ORDER BY r.reported_at",
        (start, end),
    ):
        results[str(r[0])] = (str(r[1]), float(r[2]))
    return [(t, results.get(t.tube)) for t in found]


def _sync(tx: Tx) -> None:
    lock(tx)
    sync(tx)


def _stamp(at: float | None, zone: tzinfo) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, zone).isoformat(timespec="seconds")


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, '/'.join(parts))}"


def _checked(resource: dict[str, Any]) -> Specimen:
    specimen = Specimen.model_validate(resource)
    if specimen.combined is not None and specimen.combined not in COMBINED:
        raise ValueError(f"Specimen.combined {specimen.combined!r} is not grouped or pooled")
    return specimen


def fhir_bundle(tubes: list[tuple[Tube, Any]], zone: tzinfo = CHINA) -> Bundle:
    """The day's specimens as one FHIR R5 Bundle, validated by the library's models."""
    entries: list[dict[str, Any]] = []
    for tube, result in tubes:
        collected = {"collectedDateTime": _stamp(tube.sealed_at, zone)}
        common: dict[str, Any] = {
            "resourceType": "Specimen",
            "status": "available",
            "accessionIdentifier": {"system": TUBE_SYSTEM, "value": tube.tube},
            "collection": collected,
        }
        if tube.received_at is not None:
            common["receivedTime"] = _stamp(tube.received_at, zone)
        if result is not None:
            common["note"] = [{"text": f"result: {result[0]} ({_stamp(result[1], zone)})"}]
        if tube.mode == "single":
            resource = {**common, "subject": _subject(tube.members[0])}
            entries.append({"fullUrl": _urn(tube.tube), "resource": _checked(resource)})
            continue
        parents = []
        for position, sub in enumerate(tube.members, 1):
            url = _urn(tube.tube, str(position))
            member = {
                "resourceType": "Specimen",
                "status": "available",
                "subject": _subject(sub),
                "collection": collected,
            }
            entries.append({"fullUrl": url, "resource": _checked(member)})
            parents.append({"reference": url})
        pooled = {**common, "combined": "pooled", "parent": parents}
        entries.append({"fullUrl": _urn(tube.tube), "resource": _checked(pooled)})
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": datetime.now(zone).isoformat(timespec="seconds"),
            "entry": entries,
        }
    )


def _subject(sub: str) -> dict[str, Any]:
    return {"identifier": {"system": SUB_SYSTEM, "value": sub}}


def csv_text(tubes: list[tuple[Tube, Any]], zone: tzinfo = CHINA) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tube, result in tubes:
        for position, sub in enumerate(tube.members, 1):
            writer.writerow(
                (
                    tube.tube,
                    tube.mode,
                    tube.township,
                    tube.station,
                    position,
                    sub,
                    _stamp(tube.sealed_at, zone),
                    tube.box or "",
                    _stamp(tube.dispatched_at, zone) or "",
                    _stamp(tube.received_at, zone) or "",
                    result[0] if result else "",
                    _stamp(result[1], zone) if result else "",
                )
            )
    return out.getvalue()


# --- `station gateway export --day D --format fhir|csv` ---------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", dest="lab_db", help="the store: a SQLite file or postgresql://")
    parser.add_argument("--day", required=True, help="YYYY-MM-DD, in the township's time zone")
    parser.add_argument("--format", choices=("fhir", "csv"), default="fhir")
    parser.add_argument(
        "--utc-offset", type=float, default=8.0, help="the township's time zone (default +8)"
    )


def run(args: argparse.Namespace) -> int:
    target = args.lab_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    try:
        day = date.fromisoformat(args.day)
    except ValueError:
        raise ConfigError("--day", [f"{args.day!r} is not YYYY-MM-DD"]) from None
    zone = timezone(timedelta(hours=args.utc_offset))
    with open_store(target) as store:
        tubes = day_tubes(store, day, zone)
    if args.format == "csv":
        sys.stdout.write(csv_text(tubes, zone))
    else:
        sys.stdout.write(fhir_bundle(tubes, zone).model_dump_json(indent=1) + "\n")
    return 0
