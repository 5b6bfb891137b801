"""The ledger: one write transaction with its events, all or nothing; reads that fail say so."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edge_agent.db import open_db
from edge_agent.errors import StorageError
from edge_agent.events import EventType
from kiosk_ui.core import schema, store
from kiosk_ui.core.ledger import Ledger
from kiosk_ui.core.rules import TubeMode
from tests.support.contract import check_outbox
from tests.support.station import T0, Clock, open_station

SOURCE = "urn:sampling:T01:K03"


@pytest.fixture
def ledger(tmp_path: Path):
    db = open_db(tmp_path / "station.db")
    schema.install(db)
    led = Ledger(db, Clock(), SOURCE)
    yield led
    led.close()


def _open(tx, tube: str, mode: TubeMode = TubeMode.POOL) -> None:
    store.insert_tube(tx.conn, tube, mode=mode, capacity=1, sampler="S1", at=tx.now)
    data = {"tube": tube, "mode": mode.value, "capacity": 1, "sampler": "S1"}
    tx.emit(EventType.TUBE_OPENED, data)


def test_a_write_stores_its_fact_and_events_together_numbered_on(ledger: Ledger) -> None:
    with ledger.write() as tx:
        _open(tx, "TB0000001")
        assert ledger.conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)  # at exit
    with ledger.write() as tx2:
        _open(tx2, "TB0000002", TubeMode.SINGLE)
        tx2.emit(
            EventType.TUBE_VOIDED,
            {
                "tube": "TB0000002",
                "members": [],
                "reason": "drop",
                "sampler": "S1",
                "mode": "pool",
                "was": "open",
            },
        )
    events = check_outbox(ledger.conn)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["type"] for e in events] == [
        "sampling.tube.opened",
        "sampling.tube.opened",
        "sampling.tube.voided",
    ]
    assert events == [*tx.events, *tx2.events]
    assert {e["time"] for e in events} == {"2026-11-23T08:00:00.000Z"}  # tx.now, the clock's
    assert tx.now == T0


def test_an_error_inside_stores_nothing_and_frees_the_lock(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="changed my mind"), ledger.write() as tx:
        _open(tx, "TB0000001")
        raise ValueError("changed my mind")
    assert ledger.conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert ledger.conn.execute("SELECT count(*) FROM tubes").fetchone() == (0,)
    done = threading.Event()

    def other() -> None:
        with ledger.write() as tx2:
            _open(tx2, "TB0000002")
        done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert done.is_set()
    assert [e["seq"] for e in check_outbox(ledger.conn)] == [1]


def test_events_that_cannot_be_stored_undo_the_fact(ledger: Ledger) -> None:
    with ledger.write() as tx:
        _open(tx, "TB0000001")
    with pytest.raises(StorageError, match="not stored"), ledger.write() as tx2:
        tx2.count_from(0)  # a seq already taken: the outbox refuses the row at the end
        _open(tx2, "TB0000002", TubeMode.SINGLE)
    assert ledger.conn.execute("SELECT tube FROM tubes").fetchall() == [("TB0000001",)]
    assert [e["seq"] for e in check_outbox(ledger.conn)] == [1]


def test_a_read_that_fails_is_a_storage_error(ledger: Ledger) -> None:
    with pytest.raises(StorageError, match="could not be read"), ledger.read() as conn:
        conn.execute("SELECT * FROM no_such_table")
    with ledger.read() as conn:  # the lock was released
        assert conn.execute("SELECT count(*) FROM tubes").fetchone() == (0,)


def test_the_station_raises_storage_error_for_failed_reads_too(tmp_path: Path) -> None:
    rig = open_station(tmp_path)
    rig.station.db.conn.close()
    for read in (rig.station.counters, rig.station.open_tube, rig.station.thresholds):
        with pytest.raises(StorageError):
            read()
    with pytest.raises(StorageError):
        rig.station.scan("TB2026112300001", "S1")
    assert not isinstance(StorageError("x"), sqlite3.Error)
