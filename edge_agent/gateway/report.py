"""The day's progress report: per station and per hour, the counts the township sends upward.

``station gateway report --day D --format csv|xlsx`` writes it (and the page links to it).
One row per station and local hour that had any activity, then a ``total`` row per station,
then the township's ``total`` row; the xlsx holds the same rows on a sheet ``hours`` and one
row per station on a sheet ``stations``. Headers are in Chinese and English.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_agent.gateway.counts import DECISIONS, LANES, Counts, Day, ReadStore, tally, zone
from firmware.errors import ConfigError

EXTENSIONS = {"csv": "csv", "xlsx": "xlsx"}
TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
TOTAL = "total"
DECISION_ZH = {"pool": "混采", "single": "单采", "isolate": "隔离", "refer": "转人工"}

# (column, header): what each column holds, in the order of the sheet.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("day", "日期 day"),
    ("township", "乡镇 township"),
    ("station", "采样点 station"),
    ("hour", "小时 hour"),
    ("checkins", "登记 check-ins"),
    *(
        (f"decision_{d}", f"{zh} {d}")
        for d, zh in zip(DECISIONS, ("混采", "单采", "隔离", "转人工"), strict=True)
    ),
    *((f"lane_{lane}", f"通道 lane {lane}") for lane in LANES),
    ("fevers", "发热 fevers"),
    ("red_codes", "红码 red codes"),
    ("tubes_opened", "开管 tubes opened"),
    ("tubes_sealed", "封管 tubes sealed"),
    ("tubes_voided", "作废管 tubes voided"),
    ("boxes_dispatched", "送检箱 boxes dispatched"),
    ("sampled", "已采样人数 residents sampled"),
)


def _values(counts: Counts) -> list[int]:
    return [
        counts.checkins,
        *(counts.decisions.get(d, 0) for d in DECISIONS),
        *(counts.lanes.get(lane, 0) for lane in LANES),
        counts.fevers,
        counts.red_codes,
        counts.tubes_opened,
        counts.tubes_sealed,
        counts.tubes_voided,
        counts.boxes_dispatched,
        counts.sampled,
    ]


def rows(store: ReadStore, day: Day, township: str | None = None) -> list[list[Any]]:
    """Station-hour rows with activity, each station's total, then the township's."""
    counted = tally(store, day, township)
    out: list[list[Any]] = []
    totals: list[list[Any]] = []
    for key in sorted(counted.hours):
        for hour, counts in sorted(counted.hours[key].items()):
            out.append([str(day), key[0], key[1], f"{hour:02d}:00", *_values(counts)])
        totals.append([str(day), key[0], key[1], TOTAL, *_values(counted.station(key))])
    everyone = township if township is not None else TOTAL
    return [*out, *totals, [str(day), everyone, TOTAL, TOTAL, *_values(counted.total())]]


def to_csv(table: Sequence[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([header for _, header in COLUMNS])
    writer.writerows(table)
    # With a byte order mark, spreadsheet programs read the Chinese headers as UTF-8.
    return buf.getvalue().encode("utf-8-sig")


def to_xlsx(table: Sequence[Sequence[Any]]) -> bytes:
    from openpyxl import Workbook  # noqa: PLC0415 (only the report needs it)

    book = Workbook(write_only=True)
    hours = book.create_sheet("hours")
    stations = book.create_sheet("stations")
    header = [h for _, h in COLUMNS]
    hours.append(header)
    stations.append([h for k, h in COLUMNS if k != "hour"])
    for row in table:
        hours.append(list(row))
        if row[3] == TOTAL:
            stations.append([v for i, v in enumerate(row) if i != 3])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def render(store: ReadStore, day: Day, fmt: str, township: str | None = None) -> tuple[bytes, str]:
    """The report as bytes, and its media type."""
    if fmt not in TYPES:
        raise ValueError(f"format must be csv or xlsx, not {fmt!r}")
    table = rows(store, day, township)
    return (to_csv(table) if fmt == "csv" else to_xlsx(table)), TYPES[fmt]


# --- station gateway report ---------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", dest="report_db", help="the store: a SQLite file or a postgresql:// URL"
    )
    parser.add_argument("--day", help="YYYY-MM-DD (default: today in the time zone)")
    parser.add_argument("--format", choices=sorted(TYPES), default="csv")
    parser.add_argument(
        "--output",
        help="the file to write (default: stations-DAY.csv or .xlsx here; - for standard output)",
    )
    parser.add_argument(
        "--timezone",
        dest="report_timezone",
        help="the township's IANA time zone for days and hours (default: this machine's)",
    )
    parser.add_argument("--township", dest="report_township", help="one township's stations only")


def run(args: argparse.Namespace) -> int:
    from edge_agent.gateway.store import open_store  # noqa: PLC0415 (the store's drivers)

    target = args.report_db or getattr(args, "db", None)
    if not target:
        raise ConfigError("--db", ["a SQLite file or a postgresql:// URL is required"])
    tz = zone(args.report_timezone or getattr(args, "timezone", None))
    try:
        day = Day.parse(args.day, tz, time.time())
    except ValueError as exc:
        raise ConfigError("--day", [str(exc)]) from None
    with open_store(target) as store:
        data, _ = render(store, day, args.format, args.report_township)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    out = Path(args.output or f"stations-{day}.{EXTENSIONS[args.format]}")
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes)")
    return 0
