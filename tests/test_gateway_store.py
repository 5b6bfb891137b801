"""The gateway's store: one behaviour suite, run on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.errors import StorageError
from edge_agent.gateway import GatewayStore, open_store
from edge_agent.gateway.sqlite import sqlite_sql
from tests.support.gateway_events import stored_event

K03 = ("T01", "K03")
NOW = 1_790_000_000.0


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "gateway.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(target: str) -> Iterator[GatewayStore]:
    with open_store(target) as s:
        yield s


def count(store: GatewayStore, sql: str = "SELECT count(*) FROM events") -> int:
    return int(store.query(sql)[0][0])


def test_each_event_is_stored_once_and_a_repeat_by_id_is_dropped(store: GatewayStore) -> None:
    one, two = stored_event(1), stored_event(2)
    first = store.store([one, two, one], NOW)  # a repeat inside one batch, too
    assert (first.stored, first.repeats, first.conflicts) == (2, 1, [])
    again = store.store([two], NOW + 1)
    assert (again.stored, again.repeats) == (0, 1)
    # A repeat alone re-announces its station's prefix: the last ack may have been lost.
    assert again.advanced == {K03: 2}
    assert count(store) == 2
    rows = store.query("SELECT id, seq, type, time, happened_at, payload FROM events ORDER BY seq")
    assert [(r[0], r[1]) for r in rows] == [(one.id, 1), (two.id, 2)]
    assert rows[0][2:5] == (one.type, one.time, pytest.approx(one.happened_at))
    assert json.loads(rows[0][5]) == json.loads(one.payload)


def test_one_event_per_station_and_seq_first_kept(store: GatewayStore) -> None:
    kept = stored_event(1)
    other = stored_event(1)  # the same seq under another id: a seq from the past
    result = store.store([kept, other], NOW)
    assert (result.stored, result.repeats) == (1, 0)
    assert [e.id for e in result.conflicts] == [other.id]
    later = store.store([stored_event(2), stored_event(1)], NOW)
    assert (later.stored, len(later.conflicts), later.advanced) == (1, 1, {K03: 2})
    assert store.query("SELECT id FROM events WHERE seq = 1") == [(kept.id,)]
    # The same seq at another station is another event.
    elsewhere = store.store([stored_event(1, station="K04")], NOW)
    assert (elsewhere.stored, elsewhere.advanced) == (1, {("T01", "K04"): 1})


def test_an_id_reused_for_another_seq_is_a_conflict_not_a_repeat(store: GatewayStore) -> None:
    first = stored_event(1)
    store.store([first], NOW)
    forged = stored_event(2, ev_id=first.id)
    result = store.store([forged], NOW)
    assert (result.stored, result.repeats, [e.seq for e in result.conflicts]) == (0, 0, [2])
    assert result.advanced == {K03: 1}


def test_events_after_a_gap_wait_and_the_prefix_stops_before_it(store: GatewayStore) -> None:
    result = store.store([stored_event(s) for s in (1, 2, 4, 5, 7)], NOW)
    assert result.advanced == {K03: 2}
    assert store.waiting() == {K03: 3}
    assert store.through(*K03) == 2
    assert store.store([stored_event(3)], NOW).advanced == {K03: 5}
    assert store.waiting() == {K03: 1}
    assert store.store([stored_event(6)], NOW).advanced == {K03: 7}
    assert store.waiting() == {}
    # Arriving backwards: nothing acknowledgeable until seq 1 is there, then all of it.
    assert store.store([stored_event(s, station="K09") for s in (3, 2)], NOW).advanced == {
        ("T01", "K09"): 0
    }
    assert store.store([stored_event(1, station="K09")], NOW).advanced == {("T01", "K09"): 3}


def test_stations_are_independent_within_one_batch(store: GatewayStore) -> None:
    batch = [stored_event(s, station=f"K{n:02d}") for s in (1, 2, 3) for n in range(1, 6)]
    result = store.store(batch, NOW)
    assert result.stored == 15
    assert result.advanced == {("T01", f"K{n:02d}"): 3 for n in range(1, 6)}
    assert count(store, f"SELECT count(*) FROM stations WHERE last_seen = {NOW}") == 5


def test_status_and_telemetry_keep_the_newest(store: GatewayStore) -> None:
    store.record_station("T01", "K03", "status", {"state": "online", "release": "r7"}, NOW)
    store.record_station("T01", "K03", "telemetry", {"outbox_depth": 4}, NOW + 5)
    # A status that arrives late (an instance that read it late) does not turn back a newer.
    store.record_station("T01", "K03", "status", {"state": "offline"}, NOW + 10)
    store.record_station("T01", "K03", "status", {"state": "online"}, NOW + 8)
    store.record_station("T01", "K03", "telemetry", {"outbox_depth": 9}, NOW + 1)
    rows = store.query(
        "SELECT online, status_at, last_seen, telemetry, telemetry_at, release FROM stations "
        "WHERE township = %s AND station = %s",
        K03,
    )
    assert len(rows) == 1
    online, status_at, last_seen, telemetry, telemetry_at, release = rows[0]
    assert (online, status_at, telemetry_at, release) == (0, NOW + 10, NOW + 5, "r7")
    assert json.loads(telemetry) == {"outbox_depth": 4}
    assert last_seen == NOW + 8  # the online status; the Last Will is the broker, not the station
    states = store.station_states()
    assert [(s.station, s.online, s.through) for s in states] == [("K03", False, 0)]


def test_station_states_name_every_station_heard_from(store: GatewayStore) -> None:
    store.store([stored_event(s) for s in (1, 2, 4)], NOW)
    store.record_station("T01", "K05", "status", {"state": "online"}, NOW)
    states = {s.station: s for s in store.station_states()}
    assert sorted(states) == ["K03", "K05"]
    k03 = states["K03"]
    assert (k03.through, k03.last_seq, k03.waiting, k03.online, k03.last_seen) == (
        2,
        4,
        1,
        None,
        NOW,
    )
    assert (states["K05"].through, states["K05"].online) == (0, True)


def test_query_is_read_only_and_takes_percent_s_placeholders(store: GatewayStore) -> None:
    store.store([stored_event(1), stored_event(2)], NOW)
    assert store.query("SELECT count(*) FROM events WHERE seq > %s", (1,)) == [(1,)]
    assert store.query("SELECT count(*) FROM events WHERE type LIKE 'sampling.tube.%%'") == [(2,)]
    with pytest.raises(StorageError):
        store.query("DELETE FROM events")
    assert count(store) == 2


def test_reopening_migrates_nothing_again_and_keeps_everything(target: str) -> None:
    with open_store(target) as s:
        s.store([stored_event(1)], NOW)
    with open_store(target) as s, open_store(target) as t:  # two instances at once
        assert s.through(*K03) == t.through(*K03) == 1
        assert s.dialect == ("sqlite" if "://" not in target else "postgresql")


def test_sqlite_placeholders() -> None:
    assert sqlite_sql("a = %s AND b LIKE 'x%%' AND c = %s") == "a = ? AND b LIKE 'x%' AND c = ?"


def test_open_store_reads_sqlite_urls(tmp_path: Path) -> None:
    with open_store(f"sqlite://{tmp_path}/a.db") as s:
        assert s.dialect == "sqlite"
    assert (tmp_path / "a.db").exists()
