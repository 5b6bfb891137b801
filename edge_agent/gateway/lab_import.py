"""Lab results into the gateway: stored once, never edited, and the recall list they imply.

``import_results(store, parsed, source=..., now=...)`` keeps every row that names a tube a
station of this gateway sealed, in one transaction with the recall list's changes:

- a tube no station sealed (or one it voided, whose members are sampled again anyway) is a
  line-numbered error and is not kept;
- a result the tube already has (the same result again, or the same row imported twice) is a
  repeat: nothing changes;
- a different result for a tube that has one is a correction: it is kept only with a reason
  and a report time later than the result it corrects; the earlier row stays (results are
  facts, never edited), the later one is the tube's result from then on;
- what the kept results do to the recall list is ``recall.Plan``'s table.

``station gateway results import FILE`` runs it on a LIS export (``results.parse_results``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent.gateway.lab import Tube, lock, sync, tubes
from edge_agent.gateway.recall import Plan
from edge_agent.gateway.results import (
    CHINA,
    LabResult,
    PoolResult,
    ResultFile,
    ResultFileError,
    RowError,
    parse_results,
)
from edge_agent.gateway.store import GatewayStore, Tx, open_store
from firmware.errors import ConfigError, StationError


class LabFileError(StationError):
    """A result file that cannot be read at all (nothing of it is kept)."""


@dataclass(frozen=True, slots=True)
class Held:
    """A result a tube already has."""

    result: str
    reported_at: float


@dataclass
class ImportReport:
    rows: int = 0
    stored: int = 0
    repeats: int = 0
    corrections: int = 0
    errors: list[RowError] = field(default_factory=list)
    recall: dict[str, tuple[int, int]] = field(default_factory=dict)
    encoding: str = "utf-8"

    def lines(self, name: str) -> list[str]:
        out = [
            f"{name}: {self.rows} rows read ({self.encoding}): {self.stored} stored "
            f"({self.corrections} corrections), {self.repeats} already known, "
            f"{len(self.errors)} not kept"
        ]
        out += [f"{name}: {e}" for e in self.errors]
        for township, (first, last) in sorted(self.recall.items()):
            out.append(
                f"recall list {township}: changes {first} to {last} "
                "(sent to the township's stations by `station gateway recall`)"
            )
        return out


def import_results(
    store: GatewayStore, parsed: ResultFile, *, source: str, now: float | None = None
) -> ImportReport:
    """Store the results that match a sealed tube; every other row becomes an error."""
    at = time.time() if now is None else now
    report = ImportReport(
        rows=len(parsed.results) + len(parsed.errors),
        errors=list(parsed.errors),
        encoding=parsed.encoding,
    )
    store.write(lambda tx: _import(tx, parsed.results, source, at, report))
    report.errors.sort(key=lambda e: e.line)
    return report


def _import(tx: Tx, results: list[LabResult], source: str, at: float, report: ImportReport) -> None:
    lock(tx)
    sync(tx)
    known = tubes(tx, [r.tube for r in results])
    history = _held(tx, list(known))
    kept: list[tuple[LabResult, Tube, bool]] = []
    rows: list[tuple[str, str, float, str | None, float, str]] = []
    for row in sorted(results, key=lambda r: (r.time, r.line)):
        when = row.time.timestamp()
        tube = known.get(row.tube)
        problem = _unmatched(row, tube)
        if problem is not None or tube is None:
            report.errors.append(RowError(row.line, problem or "no tube"))
            continue
        held = history.get(row.tube, [])
        if held and held[-1].result == row.result:
            report.repeats += 1
            continue
        if held and not row.reason:
            report.errors.append(
                RowError(
                    row.line,
                    f"tube {row.tube} already has the result {held[-1].result} (reported "
                    f"{_when(held[-1].reported_at)}); {row.result} would be a correction, "
                    "which needs a reason: not kept",
                )
            )
            continue
        if held and when <= held[-1].reported_at:
            report.errors.append(
                RowError(
                    row.line,
                    f"tube {row.tube}: a correction must be reported after the result it "
                    f"corrects ({_when(held[-1].reported_at)}): not kept",
                )
            )
            continue
        history.setdefault(row.tube, []).append(Held(str(row.result), when))
        kept.append((row, tube, bool(held)))
        rows.append((row.tube, str(row.result), when, row.reason, at, source))
    tx.executemany(
        "INSERT INTO lab_results(tube, result, reported_at, reason, imported_at, source) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        rows,
    )
    # A negative pool changes nothing on the list (unless it corrects an earlier result): only
    # the members of the other tubes are read and weighed.
    weighed = [(r, t, c) for r, t, c in kept if c or t.mode == "single" or r.result != "negative"]
    plan = Plan(tx)
    plan.load(t for _r, t, _c in weighed)
    for row, tube, corrects in weighed:
        plan.outcome(tube, PoolResult(row.result), corrects=corrects)
    report.stored = len(kept)
    report.corrections = sum(1 for *_x, c in kept if c)
    report.recall = plan.write(at)


def _unmatched(row: LabResult, tube: Tube | None) -> str | None:
    if tube is None:
        return f"tube {row.tube} was never sealed at any station of this township: not kept"
    if tube.sealed_at is None:
        return (
            f"tube {row.tube} was voided at {tube.township}/{tube.station} before it was "
            "sealed: not kept"
        )
    if tube.voided_at is not None:
        return (
            f"tube {row.tube} was voided at {tube.township}/{tube.station} "
            f"({_when(tube.voided_at)}); its members are sampled again: not kept"
        )
    return None


def _held(tx: Tx, ids: list[str]) -> dict[str, list[Held]]:
    out: dict[str, list[Held]] = {}
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join(["%s"] * len(part))
        for tube, result, reported in tx.execute(
            "SELECT tube, result, reported_at FROM lab_results "
            f"WHERE tube IN ({marks}) ORDER BY reported_at",
            part,
        ):
            out.setdefault(str(tube), []).append(Held(str(result), float(reported)))
    return out


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, CHINA).strftime("%Y-%m-%d %H:%M:%S %z")


def result_from_page(store: GatewayStore, line: str, *, now: float | None = None) -> ImportReport:
    """One result typed or scanned on the gateway's page: ``TUBE,RESULT[,TIME[,REASON]]``."""
    data = ("tube,result,time,reason\n" + line.strip() + "\n").encode()
    parsed = _parse(data, "the page")
    if parsed.errors:  # one row: its error is the answer, with no line number to read
        raise LabFileError(f"the page: {parsed.errors[0].message}")
    return import_results(store, parsed, source="page", now=now)


def _parse(data: bytes, name: str) -> ResultFile:
    try:
        return parse_results(data)
    except ResultFileError as exc:
        raise LabFileError(f"{name}: {exc}; nothing was kept") from exc


# --- `station gateway results import FILE` ---------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="results_action", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="import a lab result file (CSV from the LIS)")
    imp.add_argument("file", type=Path, help="the CSV file the lab sent")
    imp.add_argument("--db", dest="lab_db", help="the store: a SQLite file or postgresql:// URL")


def run(args: argparse.Namespace) -> int:
    target = args.lab_db or args.db
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise LabFileError(f"cannot read {args.file}: {exc}") from exc
    parsed = _parse(data, str(args.file))
    with open_store(target) as store:
        report = import_results(store, parsed, source=args.file.name)
    for line in report.lines(str(args.file)):
        print(line, file=sys.stderr if ": line " in line else sys.stdout)
    return 1 if report.errors else 0
