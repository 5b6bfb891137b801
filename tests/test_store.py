"""The store: migrations, a full disk, the retention purge, two processes on one file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent import outbox, recall_list
from edge_agent.db import migrate, open_db, write_transaction
from edge_agent.errors import StorageError
from kiosk_ui.cli import main as station_main
from kiosk_ui.core import reports, schema, store
from kiosk_ui.core.station import Station
from tests.support.config import write_config
from tests.support.contract import check_outbox
from tests.support.edge import may_mount, small_tmpfs
from tests.support.station import Rig, open_station, rejected, resident

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("checkins", "tubes", "tube_members", "boxes", "waiting", "outbox", "outbox_counter")


def snapshot(path: Path) -> dict[str, list[Any]]:
    """Every row of the station's tables, read through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        conn.close()


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    schema.install(db)
    schema.install(db)
    versions = dict(db.conn.execute("SELECT component, version FROM schema_version").fetchall())
    assert versions == {
        "outbox": len(outbox.MIGRATIONS),
        "kiosk": len(schema.MIGRATIONS),
        "recall": len(recall_list.MIGRATIONS),
    }
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert set(TABLES) <= set(db.table_names())
    db.conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    schema.install(db)
    db.conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'kiosk'")
    with pytest.raises(StorageError, match="newer than this software knows"):
        schema.install(db)
    db.conn.close()


def _busy_day(rig: Rig, n: int) -> None:
    s = rig.station
    for i in range(n):
        if s.open_tube() is None:
            s.scan(f"TB{rig.clock.now:.0f}{i:04d}", "S07")
        s.check_in(resident(f"res-{i:04d}", name="居民甲"), [36.5])
        if s.open_tube() is not None and s.open_tube().full:
            s.seal("S07")


def _fill_until_full(rig: Rig) -> tuple[StorageError, dict[str, list[Any]]]:
    """Check residents in until a write fails; returns the error and the state just before
    the failed write (each write is snapshotted on its own: a step holds several)."""
    s = rig.station
    path = rig.config.storage.path
    for i in range(100_000):
        writes: list[Any] = []
        if s.open_tube() is None:
            writes.append(lambda i=i: s.scan(f"TB{i:08d}", "S07"))
        writes.append(lambda i=i: s.check_in(resident(f"full-{i:05d}", name="居民乙"), [36.5]))
        writes.append(lambda: s.seal("S07") if s.open_tube().full else None)
        for write in writes:
            before = snapshot(path)
            try:
                write()
            except StorageError as exc:
                return exc, before
    raise AssertionError("the disk never filled up")


def test_full_database_raises_and_writes_nothing(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 3})
    conn = rig.station.db.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 4}")
    exc, before = _fill_until_full(rig)
    assert "full" in str(exc)
    assert snapshot(rig.config.storage.path) == before
    # room again: the station carries on where it stopped, seq without a gap
    conn.execute("PRAGMA max_page_count = 1000000")
    rig.station.check_in(resident("after-full"), [36.5])
    check_outbox(conn)
    rig.station.close()


@pytest.fixture
def store_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "tmpfs", "512k") as where:
        yield where


@pytest.mark.skipif(not may_mount(), reason="mounting a small tmpfs needs root, unconfined")
def test_full_disk_raises_and_writes_nothing(tmp_path: Path, store_tmpfs: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 4})
    rig.station.close()
    config = rig.config.model_copy(
        update={
            "storage": rig.config.storage.model_copy(update={"path": store_tmpfs / "station.db"})
        }
    )
    station = Station.open(config, clock=rig.clock)
    rig = Rig(station, rig.clock, config, tmp_path)
    exc, before = _fill_until_full(rig)
    assert "not stored" in str(exc) or "cannot start" in str(exc)
    assert snapshot(config.storage.path) == before
    check_outbox(station.db.conn)
    station.close()


def _mark_all_delivered(path: Path, at: float) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE outbox SET published_at = ?, delivered_at = ?", (at, at))
    conn.close()


def test_purge_keeps_counts_and_undelivered_events(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 3})
    _busy_day(rig, 7)
    rig.station.check_in(rejected("expired"))
    s = rig.station
    path = rig.config.storage.path
    old_now = time.time()
    _mark_all_delivered(path, old_now)
    old_last = check_outbox(s.db.conn)[-1]["seq"]
    rig.clock.advance(15 * 86400)
    fresh = s.check_in(resident("fresh", name="新人"), [36.5])  # undelivered, recent
    counts_before = s.db.conn.execute(
        "SELECT decision, count(*) FROM checkins GROUP BY 1 ORDER BY 1"
    ).fetchall()
    result = store.purge(s.db, 14 * 86400, old_now + 15 * 86400)
    assert result.events == old_last
    assert result.checkins == 8 and result.tube_members == 6
    remaining = check_outbox(s.db.conn)
    assert [e["seq"] for e in remaining] == [old_last + 1, old_last + 2]
    assert (
        s.db.conn.execute(
            "SELECT decision, count(*) FROM checkins GROUP BY 1 ORDER BY 1"
        ).fetchall()
        == counts_before
    )
    assert s.db.conn.execute(
        "SELECT count(*) FROM checkins WHERE resident IS NOT NULL OR name IS NOT NULL"
    ).fetchone() == (1,)
    assert s.db.conn.execute(
        "SELECT resident, name FROM checkins WHERE id = ?", (fresh.checkin_id,)
    ).fetchone() == ("fresh", "新*")
    # the open tube keeps its members; tube barcodes stay used
    assert s.db.conn.execute(
        "SELECT count(*) FROM tube_members WHERE resident IS NULL"
    ).fetchone() == (6,)
    assert s.db.conn.execute("SELECT count(*) FROM tubes").fetchone()[0] == 3
    # the next event continues the numbering
    nxt = s.check_in(resident("next"), [36.5])
    assert nxt.events[0]["seq"] == old_last + 3
    s.close()


def test_numbering_continues_after_a_purge_took_every_event(tmp_path: Path) -> None:
    rig = open_station(tmp_path, {"pool_size": 3})
    _busy_day(rig, 4)
    s = rig.station
    last = check_outbox(s.db.conn)[-1]["seq"]
    _mark_all_delivered(rig.config.storage.path, time.time() - 10)
    assert store.purge(s.db, 0, time.time()).events == last
    assert s.db.conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert outbox.last_seq(s.db) == outbox.delivered_through(s.db) == last
    nxt = s.check_in(resident("after-purge"), [36.5])
    assert [e["seq"] for e in nxt.events] == [last + 1, last + 2]
    # a second purge, with newer events kept, leaves the floor where the rows are
    _mark_all_delivered(rig.config.storage.path, time.time() - 10)
    assert outbox.purge_delivered(s.db, 0) == 2
    assert s.check_in(resident("later"), [36.5]).events[0]["seq"] == last + 3
    s.close()


def test_an_outbox_of_the_first_schema_is_upgraded_with_its_numbering(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    migrate(db, outbox.COMPONENT, outbox.MIGRATIONS[:1])
    with write_transaction(db) as c:
        for n in (1, 2, 3):
            ident = f"00000000-0000-7000-8000-00000000000{n}"
            c.execute(
                "INSERT INTO outbox(seq, id, type, time, payload, created_at, delivered_at) "
                "VALUES (?, ?, 'sampling.tube.opened', '2026-11-23T07:00:00.000Z', '{}', 0, ?)",
                (n, ident, 1.0 if n < 3 else None),
            )
        # Version 1 counted every event; seq 4 and 5 were issued and purged since.
        c.execute("UPDATE outbox_counter SET last_seq = 5")
    schema.install(db)
    rows = db.conn.execute("SELECT seq, id, delivered_at FROM outbox ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == [1, 2, 3] and rows[2][2] is None
    assert outbox.last_seq(db) == 5 and outbox.delivered_through(db) == 2
    indexes = {r[1] for r in db.conn.execute("PRAGMA index_list(outbox)").fetchall()}
    assert indexes == set()  # no id index, no undelivered index: rows are read by seq range
    mark = db.conn.execute("SELECT delivered_through FROM outbox_counter").fetchone()
    assert mark == (2,)
    with write_transaction(db) as c:
        event = outbox.append(c, source="urn:sampling:t:s", type="sampling.tube.opened", data={})
    assert event["seq"] == 6
    db.conn.close()


def test_check_ins_of_the_first_schema_keep_their_days(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    outbox.install(db)
    migrate(db, schema.COMPONENT, schema.MIGRATIONS[:1])
    with write_transaction(db) as c:
        for n, day in enumerate(("2026-11-21", "2026-11-22", "2026-11-22"), start=1):
            c.execute(
                "INSERT INTO checkins(at, day, via, decision, lane, event_seq) "
                "VALUES (?, ?, 'code', 'refer', 'staff', ?)",
                (float(n), day, n),
            )
    schema.install(db)
    assert db.conn.execute("SELECT * FROM checkin_days ORDER BY day").fetchall() == [
        ("2026-11-21", 1),
        ("2026-11-22", 2),
    ]
    count = f"SELECT count(*) {reports.DAY_CHECKINS}"
    assert [db.conn.execute(count, (d,)).fetchone()[0] for d in ("2026-11-22", "2026-11-23")] == [
        2,
        0,
    ]
    assert "checkins_day" not in {r[1] for r in db.conn.execute("PRAGMA index_list(checkins)")}
    db.conn.close()


def test_tube_members_of_the_second_schema_keep_their_order(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    outbox.install(db)
    migrate(db, schema.COMPONENT, schema.MIGRATIONS[:2])
    with write_transaction(db) as c:
        c.execute(
            "INSERT INTO tubes(tube, mode, capacity, state, opened_at) "
            "VALUES ('TB1', 'pool', 10, 'open', 0)"
        )
        for n, sub in enumerate(("a", "b", "c"), start=1):
            c.execute(
                "INSERT INTO checkins(at, day, via, resident, decision, lane, event_seq) "
                "VALUES (?, '2026-11-23', 'code', ?, 'pool', 'main', ?)",
                (float(n), sub, n),
            )
            c.execute(
                "INSERT INTO tube_members(tube, resident, position, checkin, added_at) "
                "VALUES ('TB1', ?, ?, ?, ?)",
                (sub, n, n, float(n)),
            )
        # "a" was taken out before sealing: "b" and "c" moved up
        c.execute(
            "UPDATE tube_members SET position = NULL, removed_at = 4, remove_reason = 'left' "
            "WHERE resident = 'a'"
        )
        c.execute("UPDATE tube_members SET position = position - 1 WHERE resident IN ('b', 'c')")
        c.execute(
            "INSERT INTO waiting(mode, resident, checkin, lane, since) "
            "VALUES ('pool', 'c', 3, 'main', 5)"
        )
    schema.install(db)
    rows = db.conn.execute(
        "SELECT joined, resident, position, checkin FROM tube_members ORDER BY joined"
    ).fetchall()
    assert rows == [(1, "a", None, 1), (2, "b", 1, 2), (3, "c", 2, 3)]
    assert store.members(db.conn, "TB1") == ("b", "c")
    assert db.conn.execute("SELECT resident, checkin FROM waiting").fetchall() == [("c", 3)]
    assert db.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with write_transaction(db) as c:
        assert store.add_member(c, "TB1", "d", 3, 6.0) == 3
    assert db.conn.execute("SELECT max(joined) FROM tube_members").fetchone() == (4,)
    db.conn.close()


def test_a_migration_that_breaks_references_changes_nothing(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.db")
    broken = (
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE child (parent INTEGER REFERENCES parent(id));\n"
        "INSERT INTO child VALUES (5);\n"
    )
    with pytest.raises(StorageError, match="references that resolve nowhere"):
        migrate(db, "demo", [broken])
    assert "parent" not in db.table_names() and "child" not in db.table_names()
    assert db.conn.execute("SELECT count(*) FROM schema_version").fetchone() == (0,)
    assert db.conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    db.conn.close()


def test_the_delivered_mark_follows_marks_out_of_order_and_requests_again(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path / "s.db")
    schema.install(db)
    with write_transaction(db) as c:
        for _ in range(6):
            outbox.append(c, source="urn:sampling:t:s", type="sampling.tube.opened", data={})

    def mark() -> int:
        return int(db.conn.execute("SELECT delivered_through FROM outbox_counter").fetchone()[0])

    outbox.mark_delivered(db, [1, 3, 4])  # PUBACKs may come back out of order
    assert (mark(), outbox.delivered_through(db), outbox.undelivered_count(db.conn)) == (1, 1, 3)
    assert [r.seq for r in outbox.pending(db, 0, 10)] == [2, 5, 6]
    outbox.mark_delivered(db, [2])
    assert (mark(), outbox.stats(db).depth) == (4, 2)
    assert outbox.mark_delivered_through(db, 6) == 2
    assert (mark(), outbox.delivered_through(db), outbox.pending(db, 0, 10)) == (6, 6, [])
    with write_transaction(db) as c:  # the gateway asks again from seq 3
        assert outbox.reopen_from(c, 3) == 4
    assert (mark(), [r.seq for r in outbox.pending(db, 0, 10)]) == (2, [3, 4, 5, 6])
    # marked delivered behind the agent's back: the mark only lags, nothing is lost
    db.conn.execute("UPDATE outbox SET delivered_at = 1 WHERE seq = 3")
    assert (mark(), outbox.delivered_through(db), outbox.undelivered_count(db.conn)) == (2, 3, 3)
    db.conn.close()


def test_purge_never_touches_undelivered_events(tmp_path: Path) -> None:
    rig = open_station(tmp_path)
    _busy_day(rig, 4)
    n = len(check_outbox(rig.station.db.conn))
    result = store.purge(rig.station.db, 0, time.time() + 365 * 86400)
    assert result.events == 0
    assert len(check_outbox(rig.station.db.conn)) == n
    rig.station.close()


def test_station_db_cli_purge_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = open_station(tmp_path, {"pool_size": 2})
    _busy_day(rig, 4)
    rig.station.close()
    cfg = write_config(tmp_path, {"storage": {"retention_days": 0}, "sampling": {"pool_size": 2}})
    path = rig.config.storage.path
    _mark_all_delivered(path, time.time() - 10)
    assert station_main(["db", "stats", "--config", str(cfg), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["undelivered"], stats["checkins"], stats["tubes"]["sealed"]) == (0, 4, 2)
    assert stats["delivered_stored"] == stats["last_seq"] > 0
    assert station_main(["db", "purge", "--config", str(cfg), "--json"]) == 0
    purged = json.loads(capsys.readouterr().out)
    assert purged["events"] == stats["last_seq"] and purged["checkins"] == 4
    assert station_main(["db", "stats", "--config", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "checkins_purged" in text and "delivered_stored" in text
    assert station_main(["db", "purge", "--config", str(tmp_path / "missing.toml")]) == 2


READER = textwrap.dedent(
    """
    import json, sys, time
    from edge_agent import outbox
    from edge_agent.db import migrate, open_db, write_transaction
    db = open_db(sys.argv[1])
    want = int(sys.argv[2])
    seen, after, deadline = [], 0, time.monotonic() + 60
    print("ready", flush=True)
    while after < want and time.monotonic() < deadline:
        rows = outbox.pending(db, after, 50)
        if not rows:
            time.sleep(0.002)
            continue
        for r in rows:
            event = json.loads(r.payload)
            seen.append([r.seq, event["seq"], event["type"]])
        outbox.mark_delivered(db, [r.seq for r in rows])
        after = rows[-1].seq
    print(json.dumps(seen))
    """
)


@pytest.mark.timeout(120)
def test_a_second_process_reads_and_marks_delivered_while_the_station_writes(
    tmp_path: Path,
) -> None:
    rig = open_station(tmp_path, {"pool_size": 5})
    s = rig.station
    s.scan("TB000000001", "S07")  # seq 1
    n_residents = 60
    # each resident: check-in + member_added; a seal every 5; a new tube after each seal
    expected = 1 + n_residents * 2 + (n_residents // 5) * 2 - 1
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(rig.config.storage.path), str(expected)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        for i in range(n_residents):
            r = s.check_in(resident(f"p-{i:03d}"), [36.5])
            assert r.tube is not None
            if s.open_tube().full:
                s.seal("S07")
                if i < n_residents - 1:
                    s.scan(f"TB{i + 2:09d}", "S07")
        out, err = reader.communicate(timeout=90)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert reader.returncode == 0, err
    seen = json.loads(out.strip().splitlines()[-1])
    assert [row[0] for row in seen] == list(range(1, expected + 1))
    assert all(row[0] == row[1] for row in seen)
    events = check_outbox(s.db.conn)
    assert len(events) == expected
    assert s.db.conn.execute(
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
    ).fetchone() == (0,)
    assert s.counters().residents_sealed == n_residents
    s.close()
