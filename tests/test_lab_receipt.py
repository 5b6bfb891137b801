"""The lab receives boxes: reconciled against what the stations dispatched, on both stores."""

from __future__ import annotations

import argparse
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.gateway import receipt
from edge_agent.gateway.receipt import BOX_PATTERN, TUBE_PATTERN, receive_box, scans
from edge_agent.gateway.store import GatewayStore, open_store
from tests.support.lab import DAY, Township, members

HOUR = 3600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStore]:
    target = (
        str(tmp_path / "gateway.db")
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    with open_store(target) as s:
        yield s


@pytest.fixture
def day(store: GatewayStore) -> Township:
    """Station K03 sealed TB0001..TB0003 and dispatched them in BX0001; TB0004 is sealed and
    dispatched in BX0002; TB0005 is sealed, never dispatched; TB0006 was voided."""
    t = Township(store)
    for n in range(1, 6):
        t.seal(f"TB00000{n}", members(f"TB00000{n}"), at=DAY + n * 60)
    t.void("TB000006", members("TB000006", 3), at=DAY + 400)
    t.dispatch("BX0001", ["TB000001", "TB000002", "TB000003"], at=DAY + HOUR)
    t.dispatch("BX0002", ["TB000004"], at=DAY + HOUR)
    return t


def received_at(store: GatewayStore, tube: str) -> float | None:
    rows = store.query("SELECT received_at FROM lab_tubes WHERE tube = %s", (tube,))
    return None if rows[0][0] is None else float(rows[0][0])


def test_a_complete_box_is_recorded_with_hours_from_sealing(
    store: GatewayStore, day: Township
) -> None:
    at = DAY + 2 * HOUR
    got = receive_box(store, "BX0001", ["TB000001", "tb000002 ", "TB000003", "TB000001"], at=at)
    assert got.problems == []
    assert got.dispatched_by == "T01/K03"
    assert got.scanned == ["TB000001", "TB000002", "TB000003"]  # a double scan counts once
    assert got.hours == pytest.approx(
        {f"TB00000{n}": (2 * HOUR - n * 60) / HOUR for n in (1, 2, 3)}
    )
    assert [received_at(store, f"TB00000{n}") for n in (1, 2, 3, 4)] == [at, at, at, None]
    rows = store.query("SELECT box, received_at, tubes, problems FROM lab_receipts")
    assert rows == [("BX0001", at, json.dumps(got.scanned), "[]")]


def test_missing_and_foreign_tubes_and_a_voided_one_are_named(
    store: GatewayStore, day: Township
) -> None:
    got = receive_box(
        store, "BX0001", ["TB000001", "TB000004", "TB000005", "TB000006", "TB999999"], at=DAY
    )
    by_kind = sorted((p.kind, p.tube) for p in got.problems)
    assert by_kind == [
        ("missing", "TB000002"),
        ("missing", "TB000003"),
        ("not_in_box", "TB000004"),
        ("not_in_box", "TB000005"),
        ("not_in_box", "TB000006"),
        ("not_in_box", "TB999999"),
        ("voided", "TB000006"),
    ]
    text = {p.tube: p.message for p in got.problems if p.kind == "not_in_box"}
    assert text["TB000004"] == "tube TB000004 is in BX0001 but was dispatched in box BX0002"
    assert text["TB000005"] == "tube TB000005 is in BX0001 but T01/K03 never dispatched it"
    assert text["TB999999"] == "tube TB999999 is in BX0001 but no station sealed it"
    voided = next(p for p in got.problems if p.kind == "voided")
    assert "its members are sampled again; do not test it" in voided.message
    stored = json.loads(store.query("SELECT problems FROM lab_receipts")[0][0])
    assert len(stored) == 7


def test_a_box_received_twice_keeps_the_first_times(store: GatewayStore, day: Township) -> None:
    first = DAY + 2 * HOUR
    receive_box(store, "BX0002", ["TB000004"], at=first)
    again = receive_box(store, "BX0002", ["TB000004"], at=first + HOUR)
    assert again.kinds() == ["box_received_twice"]
    assert received_at(store, "TB000004") == first
    assert again.hours["TB000004"] == pytest.approx((2 * HOUR - 240) / HOUR)
    assert len(store.query("SELECT * FROM lab_receipts WHERE box = 'BX0002'")) == 2


def test_a_box_never_dispatched_is_recorded_and_said(store: GatewayStore, day: Township) -> None:
    got = receive_box(store, "BX7777", ["TB000005"], at=DAY + HOUR)
    assert got.kinds() == ["box_not_dispatched", "not_in_box"]
    assert got.problems[0].message == "box BX7777 was never dispatched by a station"
    assert received_at(store, "TB000005") == DAY + HOUR


def test_sealing_to_receipt_over_the_limit_is_a_breach(store: GatewayStore, day: Township) -> None:
    got = receive_box(
        store, "BX0001", ["TB000001", "TB000002", "TB000003"], at=DAY + 4 * HOUR + 150
    )
    late = [(p.tube, p.message) for p in got.problems if p.kind == "late"]
    # TB000001 sealed at +60 s, TB000002 at +120 s: over 4 h; TB000003 at +180 s: not.
    assert [t for t, _m in late] == ["TB000001", "TB000002"]
    assert late[0][1] == "tube TB000001: 4.0 h from sealing to receipt, over the 4 h limit"


def test_scanner_lines_become_boxes() -> None:
    tube, box = re.compile(TUBE_PATTERN), re.compile(BOX_PATTERN)
    lines = ["TB000009", "BX0001", "TB000001", "hello", "TB000002", "BX0002", "TB000004", ""]
    lines += ["", "BX0003"]
    assert list(scans(lines, tube, box)) == [
        "'TB000009': scan the box barcode first",
        "'HELLO' is neither a tube nor a box barcode; left out",  # said as it is scanned
        ("BX0001", ["TB000001", "TB000002"]),
        ("BX0002", ["TB000004"]),
        ("BX0003", []),
    ]


def test_station_gateway_receive_reads_the_scanner_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "gateway.db"
    with open_store(db) as store:
        t = Township(store)
        t.seal("TB000001", members("TB000001"), at=DAY)
        t.dispatch("BX0001", ["TB000001"], at=DAY)
    args = argparse.Namespace(
        db=None,
        lab_db=str(db),
        limit_hours=1e6,  # receipt happens now, whenever the test runs
        tube_pattern=TUBE_PATTERN,
        box_pattern=BOX_PATTERN,
    )
    assert receipt.run(args, io.StringIO("BX0001\nTB000001\n\nBX0009\nTB000001\n")) == 1
    out = capsys.readouterr().out
    assert "box BX0001 from T01/K03: 1 tubes received" in out
    assert "everything the station dispatched is here" in out
    assert "! box BX0009 was never dispatched by a station" in out


@given(
    st.lists(
        st.one_of(
            st.from_regex(r"BX[0-9A-Z]{4,8}", fullmatch=True),
            st.from_regex(r"TB[0-9A-Z]{6,10}", fullmatch=True),
            st.just(""),
            st.text(alphabet="abc xyz-", max_size=6),
        ),
        max_size=40,
    )
)
def test_every_scanned_tube_lands_in_the_box_scanned_before_it(lines: list[str]) -> None:
    tube, box = re.compile(TUBE_PATTERN), re.compile(BOX_PATTERN)
    got = list(scans(lines, tube, box))
    boxes = [item for item in got if isinstance(item, tuple)]
    said = [item for item in got if isinstance(item, str)]
    # What a model of the scanner session says: each box with the tubes scanned after it.
    expected: list[tuple[str, list[str]]] = []
    stray = 0
    current: tuple[str, list[str]] | None = None
    for line in (x.strip().upper() for x in lines):
        if not line or box.fullmatch(line):
            if current is not None:
                expected.append(current)
            current = (line, []) if line else None
        elif current is not None and tube.fullmatch(line):
            current[1].append(line)
        else:
            stray += 1
    if current is not None:
        expected.append(current)
    assert boxes == expected
    assert len(said) == stray  # every other line is named, none is lost silently
