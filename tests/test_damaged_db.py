"""A damaged station database: real files damaged by overwriting their pages, moved aside at
start, an alert in the new one, and `station db salvage` with SQLite's .recover."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent import outbox
from edge_agent.damage import (
    ALERT_KIND,
    SalvageError,
    check_at_start,
    integrity_problem,
    read_damaged,
    salvage,
)
from edge_agent.db import Database, open_db
from edge_agent.errors import StorageError
from firmware.config import load_config
from kiosk_ui.cli import main
from kiosk_ui.kiosk import build
from kiosk_ui.screens.present import alert_name
from tests.support.config import write_config
from tests.support.contract import check_outbox, validate_event
from tests.support.drills import drill_config
from tests.support.edge import (
    ROOT,
    agent_process,
    produce,
    station_config,
    stop_agent,
    wait_until,
)
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker

SOURCE = "urn:sampling:T01:K03"
AT = 1_796_300_000.0  # 2026-12-03T12:13:20Z


def make_station_db(path: Path, n: int = 240, delivered: int = 60) -> list[dict[str, Any]]:
    """A checkpointed station database of ``n`` events, the first ``delivered`` delivered."""
    db = open_db(path)
    outbox.install(db)
    events = produce(db, SOURCE, n, per_transaction=8)
    outbox.mark_delivered(db, list(range(1, delivered + 1)))
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return events


def page_size(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:18], "big")


def pages_holding(path: Path, events: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Page number -> ids of the events whose row lies in it (the id is in the payload)."""
    data, size = path.read_bytes(), page_size(path)
    out: dict[int, set[str]] = {}
    for e in events:
        for page in range(len(data) // size):
            if e["id"].encode() in data[page * size : (page + 1) * size]:
                out.setdefault(page + 1, set()).add(e["id"])
    return out


def overwrite_page(path: Path, page: int, fill: bytes = b"\xa5") -> None:
    size = page_size(path)
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        f.write((fill * size)[:size])
        f.flush()
        os.fsync(f.fileno())


def outbox_rows(db: Database) -> dict[int, tuple[str, str]]:
    rows = db.conn.execute("SELECT seq, id, payload FROM outbox").fetchall()
    return {int(s): (str(i), str(p)) for s, i, p in rows}


def open_station_db(path: Path, source: str, now: float | None = None) -> Database:
    """What the kiosk and the agent do at start."""
    check_at_start(path, source, now)
    return open_db(path)


def test_a_sound_database_opens_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    make_station_db(path, n=20, delivered=0)
    assert integrity_problem(path) is None
    db = open_station_db(path, SOURCE)
    try:
        assert outbox.last_seq(db) == 20
        assert outbox.active_alert(db.conn, ALERT_KIND) is None
    finally:
        db.conn.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []
    assert integrity_problem(tmp_path / "absent.db") is None  # a first start


def test_an_overwritten_page_is_moved_aside_alerted_and_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    events = make_station_db(path)
    by_page = pages_holding(path, events)
    # A leaf page of undelivered events in the middle of the table.
    victim = sorted(by_page)[len(by_page) // 2]
    lost = by_page[victim]
    assert lost and all(e["seq"] > 60 for e in events if e["id"] in lost)
    overwrite_page(path, victim)
    assert integrity_problem(path) is not None

    db = open_station_db(path, SOURCE, now=AT)
    try:
        aside = tmp_path / "station.db.damaged-20261203T121320Z"
        assert aside.is_file() and path.is_file()
        assert integrity_problem(aside) is not None  # kept exactly as it was found
        # The new database numbers after every event the damaged one gave.
        [alert] = check_outbox(db.conn)
        assert alert["seq"] == 241
        assert alert["type"] == "sampling.alert.raised"
        assert alert["data"]["kind"] == ALERT_KIND
        assert f"station db salvage {aside}" in alert["data"]["detail"]
        assert outbox.active_alert(db.conn, ALERT_KIND)["seq"] == 241
        assert outbox.undelivered_count(db.conn) == 1

        result = salvage(db, aside, SOURCE)
        rows = outbox_rows(db)
        undelivered_kept = [e for e in events if e["seq"] > 60 and e["id"] not in lost]
        assert result.added == len(undelivered_kept) == len(rows) - 2  # + raised, cleared
        assert result.conflicts == 0 and result.already == 0
        for e in undelivered_kept:  # the very events: ids, seqs and payloads
            assert rows[e["seq"]][0] == e["id"]
            assert json.loads(rows[e["seq"]][1]) == e
        assert not any(rows.get(e["seq"], ("",))[0] in lost for e in events)
        assert not any(s <= 60 for s in rows)  # delivered ones are not sent again
        for _, payload in rows.values():
            validate_event(json.loads(payload))
        # The cleared alert names the alert it ends; the agent reads from the start.
        cleared = json.loads(rows[242][1])
        assert cleared["type"] == "sampling.alert.cleared"
        assert cleared["data"]["raised_seq"] == 241
        assert outbox.active_alert(db.conn, ALERT_KIND) is None
        pending = outbox.pending(db, 0, 1000)
        assert [r.seq for r in pending] == sorted(rows)
        # Salvaging again adds nothing twice.
        again = salvage(db, aside, SOURCE)
        assert (again.added, again.already) == (0, len(undelivered_kept))
        assert len(outbox_rows(db)) == len(rows)
    finally:
        db.conn.close()


def test_a_destroyed_header_is_not_a_database_and_rows_come_back_from_lost_pages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "station.db"
    events = make_station_db(path, n=120, delivered=0)
    overwrite_page(path, 1, b"\x00")
    problem = integrity_problem(path)
    assert problem is not None and "not a database" in problem
    db = open_station_db(path, SOURCE, now=AT)
    try:
        # Without page 1 nothing says where the table was: the number to go on from comes
        # from the rows recovery finds in pages that lost their tree.
        alert = json.loads(outbox_rows(db)[121][1])
        assert alert["data"]["kind"] == ALERT_KIND
        result = salvage(db, tmp_path / "station.db.damaged-20261203T121320Z", SOURCE)
        assert result.added == 120 and result.unreadable == 0
        assert {outbox_rows(db)[e["seq"]][0] for e in events} == {e["id"] for e in events}
    finally:
        db.conn.close()


def test_garbage_is_moved_aside_and_salvage_says_nothing_was_found(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    garbage = os.urandom(64 * 1024)
    path.write_bytes(garbage)
    db = open_station_db(path, SOURCE, now=AT)
    db.conn.close()
    aside = tmp_path / "station.db.damaged-20261203T121320Z"
    assert aside.read_bytes() == garbage
    cfg = write_config(tmp_path, {"storage": {"path": str(path)}})
    code = main(["db", "salvage", "--config", str(cfg), "--json", str(aside)])
    assert code == 1  # nothing could be read
    with pytest.raises(SalvageError, match="no such file"):
        read_damaged(tmp_path / "nowhere.db")


def test_events_only_in_the_wal_at_a_power_cut_are_salvaged(tmp_path: Path) -> None:
    live = tmp_path / "live" / "station.db"
    live.parent.mkdir()
    first = make_station_db(live, n=100, delivered=100)
    db = open_db(live)
    later = produce(db, SOURCE, 40, per_transaction=4)  # committed, in the WAL only
    path = tmp_path / "station.db"
    for suffix in ("", "-wal"):  # the files as a power cut leaves them
        Path(f"{path}{suffix}").write_bytes(Path(f"{live}{suffix}").read_bytes())
    db.conn.close()
    assert Path(f"{path}-wal").stat().st_size > 0
    by_page = pages_holding(path, first)  # the main file: delivered events only
    overwrite_page(path, sorted(by_page)[1])
    db = open_station_db(path, SOURCE, now=AT)
    try:
        result = salvage(db, tmp_path / "station.db.damaged-20261203T121320Z", SOURCE)
        rows = outbox_rows(db)
        assert result.added == 40
        assert [rows[e["seq"]][0] for e in later] == [e["id"] for e in later]
        assert rows[141][1].find(ALERT_KIND) > 0  # numbered after the WAL's events
    finally:
        db.conn.close()


def test_salvage_command_prints_what_it_did(tmp_path: Path, capsys) -> None:
    path = tmp_path / "station.db"
    make_station_db(path, n=30, delivered=10)
    overwrite_page(path, 1, b"\x00")
    open_station_db(path, SOURCE, now=AT).conn.close()
    cfg = write_config(tmp_path, {"storage": {"path": str(path)}})
    aside = tmp_path / "station.db.damaged-20261203T121320Z"
    assert main(["db", "salvage", "--config", str(cfg), "--json", str(aside)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 20 and report["recovered"] == 30
    assert (report["first_seq"], report["last_seq"]) == (11, 30)


def test_a_database_that_cannot_be_opened_for_another_reason_is_left_where_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "station.db"
    path.mkdir()  # not a file at all: SQLite cannot open it, but nothing is damaged
    with pytest.raises(StorageError, match="cannot check the station database"):
        check_at_start(path, SOURCE)
    assert path.is_dir() and not list(tmp_path.glob("*damaged*"))


def test_a_row_whose_payload_is_not_its_event_is_never_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    make_station_db(path, n=10, delivered=0)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE outbox SET payload = replace(payload, '\"seq\":4', '\"seq\":44')")
    conn.execute("UPDATE outbox SET payload = substr(payload, 1, 40) WHERE seq = 5")
    conn.commit()
    conn.close()
    found = read_damaged(path)
    assert [e[0] for e in found.events] == [1, 2, 3, 6, 7, 8, 9, 10]
    assert found.unreadable == 2 and found.last_seq == 10


def _sent(rec: Recorder) -> dict[str, dict[str, Any]]:
    with rec.lock:
        found = [m.json() for m in rec.messages if m.topic.endswith("/events")]
    return {e["id"]: e for e in found}


@pytest.mark.timeout(120)
def test_the_real_agent_sends_the_alert_then_the_salvaged_events(
    tmp_path: Path, broker: Broker
) -> None:
    config_path, config = station_config(tmp_path, broker.url)
    events = make_station_db(config.storage.path, n=80, delivered=20)
    overwrite_page(config.storage.path, 1, b"\x00")
    log = tmp_path / "agent.log"
    with Recorder(broker.port) as rec:
        proc = agent_process(config_path, log)
        try:
            # At start the agent finds the file damaged, moves it aside and sends the alert.
            wait_until(lambda: len(_sent(rec)) == 1, 30, "the alert at the broker")
            [alert] = _sent(rec).values()
            validate_event(alert)
            assert (alert["seq"], alert["data"]["kind"]) == (81, ALERT_KIND)
            [aside] = tmp_path.glob("station.db.damaged-*[0-9]Z")
            assert f"station db salvage {aside}" in alert["data"]["detail"]
            # The technician salvages; the agent sends them from its next connection.
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "kiosk_ui.cli",
                    "db",
                    "salvage",
                    "--config",
                    str(config_path),
                    str(aside),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert stop_agent(proc, log) == 0
            proc = agent_process(config_path, log)
            wait_until(lambda: len(_sent(rec)) == 1 + 60 + 1, 30, "the salvaged events")
        finally:
            stop_agent(proc, log)
    sent = _sent(rec)
    for e in events[20:]:  # every undelivered event, with its own id, seq and data
        assert sent[e["id"]] == e
    assert not any(e["id"] in sent for e in events[:20])
    [cleared] = [e for e in sent.values() if e["type"] == "sampling.alert.cleared"]
    assert cleared["data"]["raised_seq"] == 81 and cleared["seq"] == 82


def test_a_kiosk_built_on_a_damaged_database_shows_the_sampler_the_alert(tmp_path: Path) -> None:
    path = drill_config(tmp_path, "mqtt://127.0.0.1:9", kiosk={"id_hash_key_file": "id.key"})
    config = load_config(path)
    make_station_db(config.storage.path, n=30, delivered=0)
    overwrite_page(config.storage.path, 1, b"\x00")
    with build(config) as core:
        panel = core.loop.call(core.kiosk.panel_data)
        assert [kind for kind, _ in panel.alerts] == [ALERT_KIND]
        status = core.loop.call(core.kiosk.link_status)
        assert list(status.alerts) == [ALERT_KIND]
        assert status.depth == 1  # the alert, numbered after the damaged file's 30 events
        assert alert_name(ALERT_KIND, "zh") == "数据库损坏"  # what the sampler's panel says
        assert alert_name(ALERT_KIND, "en") == "database damaged"
    assert len(list(tmp_path.glob("**/station.db.damaged-*"))) == 1


@pytest.mark.timeout(120)
def test_a_running_agent_lets_go_of_a_file_moved_aside_and_starts_again_on_the_new_one(
    tmp_path: Path, broker: Broker
) -> None:
    config_path, config = station_config(tmp_path, broker.url)
    make_station_db(config.storage.path, n=40, delivered=40)
    log = tmp_path / "agent.log"
    with Recorder(broker.port) as rec:
        agent = agent_process(config_path, log)
        try:
            wait_until(lambda: "agent started" in log.read_text(), 30, "the agent up")
            # The kiosk starts again (after a crash) and finds the file damaged.
            overwrite_page(config.storage.path, 1, b"\x00")
            aside = check_at_start(config.storage.path, SOURCE)
            assert aside is not None
            # The agent notices the file it holds is not the station database any more.
            assert agent.wait(30) == 0, log.read_text()[-2000:]
            assert "was moved aside or replaced" in log.read_text()
            agent = agent_process(config_path, log)  # as systemd starts it again
            wait_until(lambda: len(_sent(rec)) == 1, 30, "the alert at the broker")
        finally:
            stop_agent(agent, log)
    [alert] = _sent(rec).values()
    assert (alert["data"]["kind"], alert["seq"]) == (ALERT_KIND, 41)
