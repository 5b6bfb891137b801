"""The outbox's own encoding: event times, event ids, the JSON of an event."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edge_agent import outbox
from edge_agent.db import Database, open_db, write_transaction
from tests.support.contract import validate_event


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_event_times_are_rfc3339_utc_to_the_millisecond(at: float) -> None:
    text = outbox.rfc3339(at)
    assert text.endswith("Z") and len(text) == len("2026-11-23T07:00:00.123Z")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    exact = datetime.fromtimestamp(at, UTC)
    assert timedelta(0) <= exact - parsed < timedelta(milliseconds=1, microseconds=1)


def test_event_ids_are_unique_time_ordered_uuid7() -> None:
    ids = [outbox._new_id(1_763_880_000.0 + i / 1000) for i in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # later milliseconds sort later
    for text in ids[:50]:
        u = uuid.UUID(text)
        assert (u.version, u.variant) == (7, uuid.RFC_4122)
        assert str(u) == text
    ms = int.from_bytes(uuid.UUID(ids[0]).bytes[:6])
    assert ms == 1_763_880_000_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out
        try:
            os.write(write, " ".join(outbox._new_id(1.0) for _ in range(20)).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = {outbox._new_id(1.0) for _ in range(20)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 20 and not parent & child


def test_the_stored_payload_is_the_event_whatever_the_text(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    outbox.install(db)
    data = {"resident": 'r-"quoted"\\back\nline', "name": "张*", "detail": "\u2028 ℃", "n": 1.5}
    with write_transaction(db) as c:
        event = outbox.append(
            c, source="urn:sampling:T01:K03", type="sampling.alert.raised", data=data
        )
    (payload,) = db.conn.execute("SELECT payload FROM outbox").fetchone()
    assert json.loads(payload) == event
    assert list(json.loads(payload)) == list(event)  # the envelope's keys in their order
    assert "张*" in payload  # UTF-8, not \\u escapes
    db.conn.close()


# Text as the station's sources give it (decoded UTF-8: no lone surrogates); integers of the
# size events hold (seq, positions, counts).
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    st.dictionaries(
        _TEXT.filter(bool),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(),
            _TEXT,
        ),
        max_size=6,
    ),
    st.sampled_from(["urn:sampling:T01:K03", "urn:sampling:镇-1:K_9"]),
)
def test_any_data_round_trips_through_the_payload(data: dict[str, object], source: str) -> None:
    db = Database(sqlite3.connect(":memory:", isolation_level=None))
    outbox.install(db)
    with write_transaction(db) as c:
        event = outbox.append(c, source=source, type="sampling.demo", data=data)
    (payload,) = db.conn.execute("SELECT payload FROM outbox").fetchone()
    again = json.loads(payload, parse_constant=_not_json)  # no NaN or Infinity in it
    finite = {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()
    }
    assert again == {**event, "data": finite}
    db.conn.close()


def _not_json(token: str) -> object:
    raise AssertionError(f"{token} is not JSON")


def test_an_alert_event_keeps_the_contract(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    outbox.install(db)
    with write_transaction(db) as c:
        raised, again = (
            outbox.standing_alert(
                c, source="urn:sampling:T01:K03", kind="storage_low", stands=True, detail=detail
            )
            for detail in ("3.0 MB free", "2.0 MB free")
        )
    assert raised is not None and again is None
    (payload,) = db.conn.execute("SELECT payload FROM outbox").fetchone()
    validate_event(json.loads(payload))
    db.conn.close()


def test_standing_alerts_lists_what_stands_and_nothing_cleared(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    outbox.install(db)
    source = "urn:sampling:T01:K03"
    with write_transaction(db) as c:
        outbox.standing_alert(c, source=source, kind="storage_low", stands=True, detail="2 MB")
        outbox.standing_alert(
            c, source=source, kind="sensor_fault", stands=True, detail="no answer", device="camera"
        )
        outbox.standing_alert(
            c, source=source, kind="sensor_fault", stands=True, detail="NaN", device="thermometer"
        )
        outbox.standing_alert(
            c, source=source, kind="sensor_fault", stands=False, detail="ok", device="camera"
        )
        outbox.set_state(c, "link.state", "online")  # not an alert
        outbox.set_state(c, "alerted.x", 1)  # a prefix of "alert." is not enough
    standing = outbox.standing_alerts(db)
    assert sorted(standing) == ["sensor_fault.thermometer", "storage_low"]
    assert standing["storage_low"]["detail"] == "2 MB"
    assert standing["sensor_fault.thermometer"]["seq"] == 3
    assert outbox.read_state(db)["alert.sensor_fault.camera"] is None
    db.conn.close()
