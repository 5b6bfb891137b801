"""A day's specimens exported as FHIR R5 (built and validated by fhir.resources) and CSV."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.specimen import Specimen

from edge_agent.gateway import export
from edge_agent.gateway.export import CSV_COLUMNS, csv_text, day_tubes, fhir_bundle
from edge_agent.gateway.lab_import import import_results
from edge_agent.gateway.receipt import receive_box
from edge_agent.gateway.results import parse_results
from edge_agent.gateway.store import GatewayStore, open_store
from tests.support.lab import DAY, Township, members

HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
    with open_store(tmp_path / "gateway.db") as s:
        t = Township(s)
        t.seal("TB000001", members("TB000001", 3), at=DAY)
        t.seal("TB000002", ["solo-1"], mode="single", at=DAY + 60)
        t.seal("TB000003", members("TB000003", 2), at=DAY + 24 * HOUR)  # the next day
        t.void("TB000004", members("TB000004", 2), at=DAY + 120)
        t.dispatch("BX0001", ["TB000001", "TB000002"], at=DAY + HOUR)
        receive_box(s, "BX0001", ["TB000001", "TB000002"], at=DAY + 2 * HOUR)
        import_results(
            s, parse_results(b"tube,result\nTB000001,positive\n"), source="t", now=DAY + 3 * HOUR
        )
        yield s


def test_a_day_as_a_fhir_r5_bundle(store: GatewayStore) -> None:
    tubes = day_tubes(store, date(2026, 12, 3))
    assert [t.tube for t, _r in tubes] == ["TB000001", "TB000002"]  # not voided, not tomorrow
    bundle = fhir_bundle(tubes)
    text = bundle.model_dump_json()
    again = Bundle.model_validate_json(text)  # what leaves the gateway reads back as R5
    specimens = [e.resource for e in again.entry]
    assert all(isinstance(s, Specimen) for s in specimens)
    assert len(specimens) == 3 + 1 + 1  # three members and their pool, one single tube
    pooled = [s for s in specimens if s.combined == "pooled"]
    assert len(pooled) == 1
    pool = pooled[0]
    assert pool.accessionIdentifier.value == "TB000001"
    assert pool.receivedTime is not None
    assert pool.note[0].text.startswith("result: positive")
    by_url = {e.fullUrl: e.resource for e in again.entry}
    parents = [by_url[p.reference] for p in pool.parent]
    assert [p.subject.identifier.value for p in parents] == members("TB000001", 3)
    assert {p.subject.identifier.system for p in parents} == {export.SUB_SYSTEM}
    single = next(s for s in specimens if s.accessionIdentifier and s.combined is None)
    assert single.subject.identifier.value == "solo-1"
    assert single.parent is None
    # Pseudonymous subs only: nothing like a name or a national id anywhere in the bundle.
    assert "name" not in json.loads(text)["entry"][0]["resource"]


def test_a_specimen_the_library_would_not_accept_never_leaves() -> None:
    with pytest.raises(ValueError, match="receivedTime"):
        export._checked({"resourceType": "Specimen", "receivedTime": "yesterday"})
    with pytest.raises(ValueError, match="is not grouped or pooled"):
        export._checked({"resourceType": "Specimen", "combined": "mixed"})


def test_a_day_as_csv(store: GatewayStore) -> None:
    rows = list(csv.reader(io.StringIO(csv_text(day_tubes(store, date(2026, 12, 3))))))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert [(r["tube"], r["position"], r["sub"], r["result"]) for r in body] == [
        ("TB000001", "1", "tb000001-r1", "positive"),
        ("TB000001", "2", "tb000001-r2", "positive"),
        ("TB000001", "3", "tb000001-r3", "positive"),
        ("TB000002", "1", "solo-1", ""),
    ]
    assert body[0]["sealed_at"] == "2026-12-03T10:00:00+08:00"
    assert body[0]["received_at"] == "2026-12-03T12:00:00+08:00"
    assert body[0]["box"] == "BX0001"


def test_station_gateway_export(
    store: GatewayStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "gateway.db")
    args = argparse.Namespace(db=db, lab_db=None, day="2026-12-04", format="fhir", utc_offset=8.0)
    assert export.run(args) == 0
    bundle = Bundle.model_validate_json(capsys.readouterr().out)
    assert len(bundle.entry) == 3  # TB000003's two members and the pool
    args.format = "csv"
    assert export.run(args) == 0
    assert capsys.readouterr().out.count("TB000003") == 2
    args.day = "3 Dec"
    with pytest.raises(Exception, match="is not YYYY-MM-DD"):
        export.run(args)
