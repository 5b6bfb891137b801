"""`station gateway report`: the day's counts per station and hour, as CSV and as xlsx, read
back and checked number by number against what the stations committed."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from edge_agent.gateway.counts import DECISIONS, LANES, Day
from edge_agent.gateway.report import COLUMNS, TOTAL, render
from edge_agent.gateway.store import GatewayStore, open_store
from tests.support.gateway_day import (
    DAY,
    EXPECTED,
    FIRST_HOUR,
    SECOND_HOUR,
    TZ,
    day_total,
    deliver,
    station_day,
)
from tests.support.station import T0

ROOT = Path(__file__).resolve().parents[1]


def flat(counts: dict[str, Any]) -> list[int]:
    """A counts dict in the report's column order."""
    return [
        counts["checkins"],
        *(counts["decisions"][d] for d in DECISIONS),
        *(counts["lanes"][lane] for lane in LANES),
        *(
            counts[k]
            for k in (
                "fevers",
                "red_codes",
                "tubes_opened",
                "tubes_sealed",
                "tubes_voided",
                "boxes_dispatched",
                "sampled",
            )
        ),
    ]


def doubled(counts: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {n: 2 * x for n, x in v.items()} if isinstance(v, dict) else 2 * v
        for k, v in counts.items()
    }


@pytest.fixture
def gateway_db(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    with open_store(path) as store:
        for station in ("K03", "K04"):
            deliver(store, station_day(tmp_path / station, station), now=T0 + 3600)
    return path


@pytest.fixture
def store(gateway_db: Path) -> Iterator[GatewayStore]:
    with open_store(gateway_db) as s:
        yield s


def expected_rows() -> list[list[Any]]:
    rows: list[list[Any]] = []
    for station in ("K03", "K04"):
        for hour in (FIRST_HOUR, SECOND_HOUR):
            rows.append([DAY, "T01", station, f"{hour}:00", *flat(EXPECTED[hour])])
    for station in ("K03", "K04"):
        rows.append([DAY, "T01", station, TOTAL, *flat(day_total())])
    rows.append([DAY, TOTAL, TOTAL, TOTAL, *flat(doubled(day_total()))])
    return rows


def test_the_csv_report_reads_back_with_every_number(store: GatewayStore) -> None:
    data, ctype = render(store, Day.parse(DAY, TZ, T0), "csv")
    assert ctype == "text/csv; charset=utf-8" and data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table[0] == [header for _, header in COLUMNS]
    assert "发热 fevers" in table[0] and "登记 check-ins" in table[0]
    body = [[*r[:4], *map(int, r[4:])] for r in table[1:]]
    assert body == expected_rows()


def test_the_xlsx_report_reads_back_with_every_number(store: GatewayStore) -> None:
    data, _ = render(store, Day.parse(DAY, TZ, T0), "xlsx")
    book = load_workbook(io.BytesIO(data), read_only=True)
    try:
        assert book.sheetnames == ["hours", "stations"]
        hours = [list(r) for r in book["hours"].iter_rows(values_only=True)]
        stations = [list(r) for r in book["stations"].iter_rows(values_only=True)]
    finally:
        book.close()
    assert hours[0] == [header for _, header in COLUMNS]
    assert hours[1:] == expected_rows()
    assert stations[0] == [h for k, h in COLUMNS if k != "hour"]
    assert stations[1:] == [[r[0], r[1], r[2], *r[4:]] for r in expected_rows() if r[3] == TOTAL]
    # Numbers are numbers in the sheet, not text a spreadsheet cannot add up.
    assert all(isinstance(v, int) for v in stations[1][3:])


def test_a_quiet_day_has_only_the_township_row(store: GatewayStore) -> None:
    data, _ = render(store, Day.parse("2026-11-20", TZ, T0), "csv")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table[1:] == [["2026-11-20", TOTAL, TOTAL, TOTAL, *["0"] * (len(COLUMNS) - 4)]]


def station_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "gateway", *args],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_station_gateway_report_writes_both_formats(gateway_db: Path, tmp_path: Path) -> None:
    common = ["report", "--db", str(gateway_db), "--day", DAY, "--timezone", "Asia/Shanghai"]
    out = station_cli(*common, "--format", "csv", "--output", "-")
    assert out.returncode == 0, out.stderr.decode()
    table = list(csv.reader(io.StringIO(out.stdout.decode("utf-8-sig"))))
    assert [[*r[:4], *map(int, r[4:])] for r in table[1:]] == expected_rows()

    out = station_cli(*common, "--format", "xlsx", cwd=tmp_path)
    assert out.returncode == 0, out.stderr.decode()
    written = tmp_path / f"stations-{DAY}.xlsx"
    assert f"wrote {written.name}" in out.stdout.decode()
    book = load_workbook(written, read_only=True)
    try:
        rows = [list(r) for r in book["hours"].iter_rows(values_only=True)]
    finally:
        book.close()
    assert rows[1:] == expected_rows()

    # In UTC the same facts fall at 08:00 and 09:00.
    out = station_cli(*common[:-1], "UTC", "--output", "-")
    hours = {r[3] for r in csv.reader(io.StringIO(out.stdout.decode("utf-8-sig")))}
    assert {"08:00", "09:00", TOTAL} <= hours and "16:00" not in hours


def test_station_gateway_report_refuses_bad_input_clearly(gateway_db: Path) -> None:
    for args, why in (
        (["--day", "23/11/2026"], "not a day (YYYY-MM-DD)"),
        (["--day", DAY, "--timezone", "Nowhere/Atlantis"], "unknown time zone"),
        (["--day", DAY, "--format", "pdf"], "invalid choice: 'pdf'"),
    ):
        out = station_cli("report", "--db", str(gateway_db), *args, "--output", "-")
        assert out.returncode == 2, (args, out.stderr)
        assert why in out.stderr.decode(), out.stderr.decode()
        assert out.stdout == b""
    out = station_cli("report", "--day", DAY)
    assert out.returncode == 2 and "--db" in out.stderr.decode()
