"""The lab's side of a drill: a station's own events, a result file, and the recall list
applied to the station as its agent applies it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edge_agent import recall_list
from edge_agent.db import open_db
from kiosk_ui.drills import scenario
from kiosk_ui.drills.lab import DrillLab
from kiosk_ui.errors import DrillError, SimulateError
from tests.support.station import open_station, resident

TUBE, BOX = "TB2026120300001", "BX20261203"


def test_a_positive_result_reaches_the_station_of_the_drill(tmp_path: Path) -> None:
    rig = open_station(tmp_path)
    rig.station.scan(TUBE, "S07")
    for sub in ("a", "b", "c"):
        rig.station.check_in(resident(sub), [36.5])
    rig.station.seal("S07")
    rig.station.dispatch(BOX, "S07")
    rig.station.close()
    lab = DrillLab(rig.config.storage.path, tmp_path, "T01", "K03")
    try:
        report = lab.results(f"tube,result\n{TUBE},positive\n")
        assert (report.stored, report.recall) == (1, {"T01": (1, 3)})
        db = open_db(rig.config.storage.path)
        assert recall_list.version(db.conn) == 3
        got = recall_list.lookup(db.conn, "b")
        assert got is not None and (got.pool, got.reason, got.action) == (
            TUBE,
            "pool_positive",
            "single",
        )
        assert lab.wait_version(3, timeout=0) == 3
        assert lab.wait_version(4, timeout=0.2) == 3  # nothing more comes
        with pytest.raises(SimulateError, match="tube TB2026120300009 was never sealed"):
            lab.results("tube,result\nTB2026120300009,positive\n")
        with pytest.raises(SimulateError, match="leaves a gap: this station holds version 3"):
            change = {"v": 9, "op": "remove", "sub": "a", "pool": TUBE, "reason": "corrected"}
            lab.apply({"township": "T01", "from": 9, "through": 9, "changes": [change]})
        with pytest.raises(SimulateError, match="the drill's recall command: 'through'"):
            lab.apply({"township": "T01", "from": 4, "changes": []})
        db.conn.close()
    finally:
        lab.close()


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"results": ""}, "'results' must be a non-empty string"),
        ({"recall_version": -1}, "'recall_version' must be an integer >= 0"),
        ({"recall_version": True}, "'recall_version' must be an integer >= 0"),
        ({"recall": "r1"}, "'recall' must be an object"),
        ({"recall": {"sub": "r1", "why": "x"}}, "unknown key 'why' in 'recall'"),
        ({"recall": {"reason": "pool_positive"}}, "names the resident by 'sub' or by 'id'"),
        ({"recall": {"sub": "a", "id": "b"}}, "names the resident by 'sub' or by 'id'"),
        (
            {"recall": {"sub": "r1", "reason": "pool_positive", "pool": "TB1"}},
            "is op 'add' (with reason, pool, action)",
        ),
        (
            {"recall": {"sub": "r1", "op": "drop", "reason": "x", "pool": "TB1"}},
            "or 'remove' (with reason, pool)",
        ),
    ],
)
def test_a_bad_lab_step_is_named_before_anything_runs(step: dict[str, Any], message: str) -> None:
    with pytest.raises(DrillError, match=re.escape(message)):
        scenario.parse({"name": "t", "steps": [{"scan": TUBE}, step]})


def test_the_lab_steps_parse() -> None:
    got = scenario.parse(
        {
            "name": "t",
            "steps": [
                {"results": "tube,result\nTB1,positive\n"},
                {"recall": {"sub": "r1", "op": "remove", "reason": "corrected", "pool": "TB1"}},
                {"recall_version": 2},
                {"expect": {"recall_version": 2}},
            ],
        }
    )
    assert [s.describe() for s in got.steps] == [
        "results (1 rows)",
        "recall remove (corrected)",
        "recall_version 2",
        "expect",
    ]
