"""Lab results into the gateway and the recall list they make, on both stores."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from edge_agent import commands as station_commands
from edge_agent.gateway import lab_import, recall
from edge_agent.gateway.lab_import import LabFileError, import_results, result_from_page
from edge_agent.gateway.results import CHINA, parse_results
from edge_agent.gateway.store import GatewayStore, open_store
from tests.support.lab import DAY, Township, members

HOUR = 3600.0
RECEIVED = datetime(2026, 12, 3, 18, 0, tzinfo=CHINA)


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
    """Pools TB000001..TB000004 of ten each at K03, a single tube TB000005 at K04, all T01."""
    t = Township(store)
    for n in range(1, 5):
        t.seal(f"TB00000{n}", members(f"TB00000{n}"), at=DAY + n * 60)
    t.seal("TB000005", ["solo-1"], mode="single", at=DAY + 300, station="K04")
    return t


def load(store: GatewayStore, text: str, encoding: str = "utf-8") -> lab_import.ImportReport:
    parsed = parse_results(text.encode(encoding), received=RECEIVED)
    return import_results(store, parsed, source="test.csv", now=DAY + 8 * HOUR)


def listed(store: GatewayStore) -> dict[str, tuple[str, str, str]]:
    return {s: (e.pool, e.reason, e.action) for s, e in recall.listed(store, "T01").items()}


def test_results_make_the_recall_list(store: GatewayStore, day: Township) -> None:
    report = load(
        store,
        "tube,result,time\n"
        "TB000001,negative,2026-12-03 15:00\n"
        "TB000002,positive,2026-12-03 15:01\n"
        "TB000003,invalid,2026-12-03 15:02\n"
        "TB000005,positive,2026-12-03 15:03\n",
    )
    assert (report.rows, report.stored, report.repeats, report.errors) == (4, 4, 0, [])
    expected = {s: ("TB000002", "pool_positive", "single") for s in members("TB000002")}
    expected |= {s: ("TB000003", "pool_invalid", "single") for s in members("TB000003")}
    expected["solo-1"] = ("TB000005", "single_positive", "isolate")
    assert listed(store) == expected
    assert report.recall == {"T01": (1, 21)}
    changes = recall.changes_since(store, "T01", 0)
    assert [c.v for c in changes] == list(range(1, 22))
    assert {c.op for c in changes} == {"add"}
    assert store.query("SELECT count(*) FROM lab_results")[0][0] == 4


def test_a_tube_never_sampled_is_a_numbered_error_and_the_rest_is_kept(
    store: GatewayStore, day: Township
) -> None:
    day.void("TB000004", members("TB000004"), at=DAY + 600)
    report = load(
        store,
        "tube,result\nTB000001,negative\nTB424242,positive\nTB000004,positive\nTB000002,pos\n",
    )
    assert report.stored == 2
    assert [str(e) for e in report.errors] == [
        "line 3: tube TB424242 was never sealed at any station of this township: not kept",
        "line 4: tube TB000004 was voided at T01/K03 (2026-12-03 10:10:00 +0800); its members "
        "are sampled again: not kept",
    ]
    assert set(listed(store)) == set(members("TB000002"))


def test_a_repeat_is_a_no_op_and_a_conflict_needs_a_reason(
    store: GatewayStore, day: Township
) -> None:
    text = "tube,result,time\nTB000002,positive,2026-12-03 15:00\n"
    assert load(store, text).stored == 1
    again = load(store, text)  # the same file imported twice
    assert (again.stored, again.repeats, again.recall) == (0, 1, {})
    clash = load(store, "tube,result,time\nTB000002,negative,2026-12-03 16:00\n")
    assert clash.stored == 0
    assert [str(e) for e in clash.errors] == [
        "line 2: tube TB000002 already has the result positive (reported 2026-12-03 15:00:00 "
        "+0800); negative would be a correction, which needs a reason: not kept"
    ]
    early = load(store, "tube,result,time,reason\nTB000002,negative,2026-12-03 14:00,retest\n")
    assert "a correction must be reported after the result it corrects" in str(early.errors[0])
    assert len(listed(store)) == 10
    rows = store.query("SELECT result FROM lab_results")
    assert rows == [("positive",)]


def test_a_correction_with_a_reason_takes_the_recall_back(
    store: GatewayStore, day: Township
) -> None:
    load(store, "tube,result,time\nTB000002,positive,2026-12-03 15:00\n")
    fixed = load(
        store, "tube,result,time,reason\nTB000002,negative,2026-12-03 17:00,sample mix-up\n"
    )
    assert (fixed.stored, fixed.corrections, fixed.recall) == (1, 1, {"T01": (11, 20)})
    assert listed(store) == {}
    removed = recall.changes_since(store, "T01", 10)
    assert {(c.op, c.reason, c.pool) for c in removed} == {("remove", "corrected", "TB000002")}
    # Both results stay: facts are never edited.
    assert store.query("SELECT result, reason FROM lab_results ORDER BY reported_at") == [
        ("positive", None),
        ("negative", "sample mix-up"),
    ]


def test_a_single_negative_after_the_recall_clears_the_resident(
    store: GatewayStore, day: Township
) -> None:
    load(store, "tube,result,time\nTB000002,positive,2026-12-03 15:00\n")
    recalled = members("TB000002")[0]
    day.seal("TB000010", [recalled], mode="single", at=DAY + 6 * HOUR, station="K04")
    day.seal("TB000011", [members("TB000002")[1]], mode="single", at=DAY + 6 * HOUR)
    report = load(
        store, "tube,result,time\nTB000010,negative,2026-12-03 19:00\nTB000011,positive,19:00\n"
    )
    assert [str(e) for e in report.errors] == [
        "line 3: time '19:00' is neither RFC 3339 nor YYYY-MM-DD HH:MM"
    ]
    assert recalled not in listed(store)
    assert len(listed(store)) == 9
    last = recall.changes_since(store, "T01", 10)
    assert [(c.v, c.op, c.sub, c.reason) for c in last] == [
        (11, "remove", recalled, "single_negative")
    ]


def test_a_gbk_file_from_a_chinese_excel(store: GatewayStore, day: Township) -> None:
    text = (
        "试管编号,检测结果,报告时间\n"
        "TB000002,阳性,2026/12/03 15:00\n"
        "TB000001,阴性,2026/12/03 15:00\n"
    )
    report = load(store, text, "gbk")
    assert (report.encoding, report.stored, report.errors) == ("gb18030", 2, [])
    assert len(listed(store)) == 10


def test_one_result_from_the_page(store: GatewayStore, day: Township) -> None:
    report = result_from_page(store, "TB000005,positive", now=DAY + 8 * HOUR)
    assert report.stored == 1
    assert listed(store) == {"solo-1": ("TB000005", "single_positive", "isolate")}
    with pytest.raises(LabFileError, match="result 'maybe' is not negative, positive or inv"):
        result_from_page(store, "TB000001,maybe")
    assert listed(store) == {"solo-1": ("TB000005", "single_positive", "isolate")}


def test_station_gateway_results_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "gateway.db"
    with open_store(db) as s:
        Township(s).seal("TB000001", members("TB000001"), at=DAY)
    good = tmp_path / "lis.csv"
    good.write_text("tube,result\nTB000001,positive\nTB000002,negative\n")
    args = argparse.Namespace(db=None, lab_db=str(db), file=good, results_action="import")
    assert lab_import.run(args) == 1  # a row was not kept: scripts see it
    captured = capsys.readouterr()
    assert "2 rows read (utf-8): 1 stored (0 corrections), 0 already known, 1 not kept" in (
        captured.out
    )
    assert "recall list T01: changes 1 to 10" in captured.out
    assert "line 3: tube TB000002 was never sealed" in captured.err
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(LabFileError, match="the file is empty; nothing was kept"):
        lab_import.run(argparse.Namespace(db=None, lab_db=str(db), file=empty))


def test_recall_commands_fit_the_size_limit_and_keep_the_schema() -> None:
    changes = [
        recall.Change(v, "add", f"sub-{v:06d}-" + "x" * 40, f"TB{v:08d}", "pool_positive", "single")
        for v in range(1, 1001)
    ]
    changes.append(recall.Change(1001, "remove", "sub-000001", "TB00000001", "corrected", None))
    made = recall.commands("T01", changes)
    assert len(made) > 1
    validator = jsonschema.Draft202012Validator(station_commands.schema("recall_update"))
    envelope = jsonschema.Draft202012Validator(station_commands.schema("envelope"))
    seen = []
    for command in made:
        payload = json.dumps(command, ensure_ascii=False).encode()
        assert len(payload) <= station_commands.MAX_COMMAND_BYTES
        envelope.validate(command)
        validator.validate(command["args"])
        args = command["args"]
        assert [c["v"] for c in args["changes"]] == list(range(args["from"], args["through"] + 1))
        seen += [c["v"] for c in args["changes"]]
    assert seen == list(range(1, 1002))
    bad = {**made[0]["args"], "township": "T01/K03"}
    assert not validator.is_valid(bad)


def test_two_importers_at_once_number_the_changes_without_a_collision(
    store: GatewayStore, day: Township, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The lab's lock: two writers on their own connections follow each other."""
    target = (
        str(tmp_path / "gateway.db")
        if store.dialect == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    errors: list[BaseException] = []

    def run(tube: str) -> None:
        try:
            with open_store(target) as own:
                load(own, f"tube,result\n{tube},positive\n")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"TB00000{n}",)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [c.v for c in recall.changes_since(store, "T01", 0)] == list(range(1, 41))
    assert len(listed(store)) == 40
