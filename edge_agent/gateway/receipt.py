"""A box arrives at the lab: its tubes scanned and reconciled with what the station dispatched.

``receive_box(store, box, scanned, at=..., limit_h=...)`` records the receipt and returns what
it found, each a ``Problem`` with a kind a script can count:

| kind | what |
|---|---|
| ``box_not_dispatched`` | no station dispatched this box (its tubes are recorded all the same) |
| ``box_received_twice`` | the box was received before; the first receipt's times stand |
| ``missing`` | a tube the station dispatched in this box was not scanned |
| ``not_in_box`` | a scanned tube not dispatched in this box (another box, none, never sealed) |
| ``voided`` | a scanned tube the station voided: its members are sampled again, do not test it |
| ``late`` | sealing to receipt took longer than the campaign's limit (``--limit-hours``) |

Each tube's first receipt sets its ``received_at``; the hours from sealing to receipt are in
the report (``Receipt.hours``). ``station gateway receive`` reads scans from standard input,
as a USB scanner types them: a box barcode, then its tubes; an empty line or the next box
barcode ends the box.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TextIO

from edge_agent.gateway.lab import Tube, box_tubes, lock, sync, tubes
from edge_agent.gateway.results import CHINA
from edge_agent.gateway.store import GatewayStore, Tx, open_store
from firmware.errors import ConfigError

DEFAULT_LIMIT_H = 4.0
TUBE_PATTERN = r"^TB[0-9A-Z]{6,30}$"  # the station's defaults (sampling.tube_pattern)
BOX_PATTERN = r"^BX[0-9A-Z]{4,30}$"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    tube: str | None
    message: str


@dataclass
class Receipt:
    box: str
    received_at: float
    scanned: list[str]
    dispatched_by: str | None = None  # township/station, None when never dispatched
    hours: dict[str, float] = field(default_factory=dict)  # tube -> sealing to receipt
    problems: list[Problem] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [p.kind for p in self.problems]

    def lines(self) -> list[str]:
        where = f" from {self.dispatched_by}" if self.dispatched_by else ""
        out = [f"box {self.box}{where}: {len(self.scanned)} tubes received"]
        out += [f"  {t}: {h:.1f} h from sealing to receipt" for t, h in self.hours.items()]
        out += [f"  ! {p.message}" for p in self.problems]
        if not self.problems:
            out.append("  everything the station dispatched is here")
        return out


def receive_box(
    store: GatewayStore,
    box: str,
    scanned: Iterable[str],
    *,
    at: float | None = None,
    limit_h: float = DEFAULT_LIMIT_H,
) -> Receipt:
    """Reconcile and record one box's receipt (one transaction)."""
    unique = list(dict.fromkeys(t.strip().upper() for t in scanned if t.strip()))
    receipt = Receipt(box, time.time() if at is None else at, unique)
    return store.write(lambda tx: _receive(tx, receipt, limit_h))


def _receive(tx: Tx, receipt: Receipt, limit_h: float) -> Receipt:
    lock(tx)
    sync(tx)
    box, at = receipt.box, receipt.received_at
    dispatched = box_tubes(tx, box)
    expected: list[str] = dispatched[2] if dispatched else []
    known = tubes(tx, [*expected, *receipt.scanned])
    add = receipt.problems.append
    if dispatched is None:
        add(Problem("box_not_dispatched", None, f"box {box} was never dispatched by a station"))
    else:
        receipt.dispatched_by = f"{dispatched[0]}/{dispatched[1]}"
    earlier = tx.execute("SELECT min(received_at) FROM lab_receipts WHERE box = %s", (box,))[0][0]
    if earlier is not None:
        add(
            Problem(
                "box_received_twice",
                None,
                f"box {box} was already received at {_clock(float(earlier))}; the first "
                "receipt's times stand",
            )
        )
    for tube in expected:
        if tube not in receipt.scanned:
            add(Problem("missing", tube, f"tube {tube} was dispatched in {box} but is missing"))
    for tube in receipt.scanned:
        info = known.get(tube)
        if tube not in expected:
            add(Problem("not_in_box", tube, _elsewhere(tube, box, info)))
        if info is not None and info.voided_at is not None:
            add(
                Problem(
                    "voided",
                    tube,
                    f"tube {tube} was voided at {info.township}/{info.station}: its members "
                    "are sampled again; do not test it",
                )
            )
        if info is not None and info.sealed_at is not None:
            start = info.received_at if info.received_at is not None else at
            hours = (start - info.sealed_at) / 3600.0
            receipt.hours[tube] = hours
            if hours > limit_h:
                add(
                    Problem(
                        "late",
                        tube,
                        f"tube {tube}: {hours:.1f} h from sealing to receipt, over the "
                        f"{limit_h:g} h limit",
                    )
                )
    _record(tx, receipt)
    return receipt


def _elsewhere(tube: str, box: str, info: Tube | None) -> str:
    if info is None or info.sealed_at is None:
        return f"tube {tube} is in {box} but no station sealed it"
    if info.box is None:
        return f"tube {tube} is in {box} but {info.township}/{info.station} never dispatched it"
    return f"tube {tube} is in {box} but was dispatched in box {info.box}"


def _record(tx: Tx, receipt: Receipt) -> None:
    tx.execute(
        "INSERT INTO lab_receipts(box, received_at, tubes, problems) VALUES (%s, %s, %s, %s)",
        (
            receipt.box,
            receipt.received_at,
            json.dumps(receipt.scanned),
            json.dumps([asdict(p) for p in receipt.problems], ensure_ascii=False),
        ),
    )
    tx.executemany(
        "UPDATE lab_tubes SET received_at = %s, received_box = %s "
        "WHERE tube = %s AND received_at IS NULL",
        [(receipt.received_at, receipt.box, t) for t in receipt.scanned],
    )


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, CHINA).strftime("%Y-%m-%d %H:%M:%S %z")


def scans(
    lines: Iterable[str], tube: re.Pattern[str], box: re.Pattern[str]
) -> Iterator[tuple[str, list[str]] | str]:
    """Boxes from scanner lines: ``(box, tubes)`` when a box ends, or a sentence about a line
    that is neither (it is left out)."""
    current: str | None = None
    found: list[str] = []
    for raw in lines:
        text = raw.strip().upper()
        if not text or box.fullmatch(text):
            if current is not None:
                yield current, found
            current, found = (text or None), []
        elif current is None:
            yield f"{text!r}: scan the box barcode first"
        elif tube.fullmatch(text):
            found.append(text)
        else:
            yield f"{text!r} is neither a tube nor a box barcode; left out"
    if current is not None:
        yield current, found


# --- `station gateway receive` -----------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", dest="lab_db", help="the store: a SQLite file or postgresql://")
    parser.add_argument(
        "--limit-hours",
        type=float,
        default=DEFAULT_LIMIT_H,
        help=f"hours allowed from sealing to receipt (default {DEFAULT_LIMIT_H:g})",
    )
    parser.add_argument("--tube-pattern", default=TUBE_PATTERN)
    parser.add_argument("--box-pattern", default=BOX_PATTERN)


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    target = args.lab_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    try:
        tube, box = re.compile(args.tube_pattern), re.compile(args.box_pattern)
    except re.error as exc:
        raise ConfigError("--tube-pattern/--box-pattern", [str(exc)]) from exc
    problems = 0
    with open_store(target) as store:
        for item in scans(stdin or sys.stdin, tube, box):
            if isinstance(item, str):
                print(item, file=sys.stderr, flush=True)
                continue
            receipt = receive_box(store, item[0], item[1], limit_h=args.limit_hours)
            problems += len(receipt.problems)
            print("\n".join(receipt.lines()), flush=True)
    return 1 if problems else 0
