"""The edge agent against a real Mosquitto: delivery, order, outages, restarts."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from edge_agent import outbox
from edge_agent.db import open_db
from edge_agent.errors import StorageError
from edge_agent.session import reconnect_delay
from tests.support.contract import validate_event
from tests.support.edge import (
    agent_process,
    agent_thread,
    all_events,
    cpu_seconds,
    fill_filesystem,
    gateway_events,
    gateway_thread,
    may_mount,
    produce,
    small_tmpfs,
    station_config,
    station_db,
    stop_agent,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker


@pytest.mark.timeout(60)
def test_backlog_then_new_events_arrive_in_order(tmp_path: Path, broker: Broker) -> None:
    _, config = station_config(tmp_path, broker.url)
    db = station_db(config)
    produce(db, config.source, 300, per_transaction=50)
    with Recorder(broker.port) as rec, agent_thread(config):
        wait_until(lambda: undelivered(db) == 0, 30, "backlog delivered")
        produce(db, config.source, 50)
        wait_until(lambda: undelivered(db) == 0, 30, "new events delivered")
        rec.wait_for(lambda r: len(r.distinct_event_ids()) == 350, 10, "all events recorded")
        status = rec.on("status")
    result = audit(all_events(db), rec.events())
    assert result.ok, result
    assert result.distinct == 350
    for event in rec.events():
        validate_event(event)  # what reached the broker keeps the published contract
    assert status and status[0].json()["state"] == "online"


@pytest.mark.timeout(90)
def test_broker_down_while_events_keep_coming(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", persistence=True)
    broker.start()
    try:
        _, config = station_config(tmp_path, broker.url)
        db = station_db(config)
        with Recorder(broker.port) as rec, agent_thread(config) as agent:
            produce(db, config.source, 100, per_transaction=10)
            wait_until(lambda: undelivered(db) == 0, 30, "first events delivered")
            broker.stop()
            for _ in range(20):  # the kiosk goes on committing while the link is down
                produce(db, config.source, 10)
            wait_until(lambda: not agent.connected, 10, "agent noticed the outage")
            assert undelivered(db) == 200
            broker.start()
            produce(db, config.source, 50)
            wait_until(lambda: undelivered(db) == 0, 40, "backlog drained after the restart")
            rec.wait_for(lambda r: len(r.distinct_event_ids()) == 350, 20, "all recorded")
        result = audit(all_events(db), rec.events())
        assert result.ok, result
        assert result.distinct == 350
    finally:
        broker.stop()


@pytest.mark.timeout(90)
def test_frozen_broker_is_noticed_within_one_and_a_half_keepalives(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        _, config = station_config(tmp_path, broker.url, keepalive_s=5)
        db = station_db(config)
        with Recorder(broker.port, persistent=False) as rec, agent_thread(config) as agent:
            produce(db, config.source, 20)
            wait_until(lambda: undelivered(db) == 0, 20, "delivered before the freeze")
            # An idle, healthy link lives on: pings keep it alive for two keepalives and more.
            time.sleep(11)
            assert agent.connected and agent.conn_no == 1
            broker.freeze()
            frozen_at = time.monotonic()
            produce(db, config.source, 5)  # sent into the frozen socket: no PUBACK comes
            wait_until(lambda: not agent.connected, 15, "agent noticed the frozen broker")
            noticed = time.monotonic() - frozen_at
            assert noticed <= 1.5 * 5, f"noticed after {noticed:.1f} s"
            assert undelivered(db) == 5
            state = outbox.read_state(db)
            assert state["link.state"] in {"offline", "connecting"}
            assert "dead" in (state["link.error"] or "")
            broker.thaw()
            wait_until(lambda: undelivered(db) == 0, 30, "delivered after the thaw")
            rec.wait_for(lambda r: len(r.distinct_event_ids()) == 25, 20, "all recorded")
        result = audit(all_events(db), rec.events())
        assert result.ok, result
    finally:
        broker.stop()


def _published_not_acked(db) -> int:  # type: ignore[no-untyped-def]
    return int(
        db.conn.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL AND delivered_at IS NULL"
        ).fetchone()[0]
    )


@pytest.mark.timeout(90)
def test_end_to_end_ack_recovers_what_a_restarted_broker_forgot(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", persistence=False)
    broker.start()
    gw_db = tmp_path / "gateway.db"
    try:
        _, config = station_config(tmp_path, broker.url, end_to_end_ack=True, ack_timeout_s=3.0)
        db = station_db(config)
        with agent_thread(config) as agent:
            with gateway_thread(broker.port, gw_db):
                produce(db, config.source, 50, per_transaction=5)
                wait_until(lambda: undelivered(db) == 0, 30, "acknowledged by the gateway")
            # The gateway is away; the broker PUBACKs what it cannot hand to anyone yet.
            produce(db, config.source, 100, per_transaction=5)
            wait_until(lambda: _published_not_acked(db) == 100, 30, "PUBACKed, not acked")
            assert undelivered(db) == 100
            broker.kill()  # no persistence: the broker forgets what it acknowledged
            broker.start()
            with gateway_thread(broker.port, gw_db):
                wait_until(lambda: undelivered(db) == 0, 40, "resent and acknowledged")
                assert agent.acked_through == 150
        stored = gateway_events(gw_db)
        result = audit(all_events(db), stored)
        assert result.ok, result
        assert [e["seq"] for e in stored] == list(range(1, 151))
    finally:
        broker.stop()


@pytest.mark.timeout(60)
def test_full_disk_fails_the_kiosk_loudly_and_delivery_goes_on(
    tmp_path: Path, broker: Broker
) -> None:
    _, config = station_config(tmp_path, broker.url)
    db = station_db(config)
    stored = produce(db, config.source, 400, per_transaction=50)
    # The kiosk's connection sees a disk with no room left for one more page.
    kiosk = open_db(config.storage.path)
    pages = kiosk.conn.execute("PRAGMA page_count").fetchone()[0]
    kiosk.conn.execute(f"PRAGMA max_page_count = {pages}")
    with Recorder(broker.port) as rec, agent_thread(config):
        with pytest.raises(StorageError, match="not stored"):
            produce(kiosk, config.source, 200, per_transaction=200)
        assert outbox.stats(kiosk).last_seq == 400  # nothing half-written
        wait_until(lambda: undelivered(db) == 0, 30, "what was stored is delivered")
        rec.wait_for(lambda r: len(r.distinct_event_ids()) == 400, 10, "recorded")
    kiosk.conn.close()
    result = audit(stored, rec.events())
    assert result.ok and result.distinct == 400, result


@pytest.mark.skipif(
    not may_mount(), reason="a real full file system needs root that may mount a tmpfs"
)
@pytest.mark.timeout(150)
@pytest.mark.parametrize("e2e", [False, True], ids=["puback", "end-to-end-ack"])
def test_real_full_disk_agent_delivers_everything_and_its_marks_catch_up(
    tmp_path: Path, broker: Broker, e2e: bool
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        config_path, config = station_config(
            tmp_path,
            broker.url,
            storage=disk / "station.db",
            end_to_end_ack=e2e,
            ack_window=50,  # far less than the backlog: delivery must not wait for our writes
            ack_timeout_s=2.0,
            telemetry_interval_s=1.0,
        )
        db = station_db(config)  # the kiosk's connection: open throughout, as in service
        stored = produce(db, config.source, 300, per_transaction=50)
        # Everything into the database file, the WAL empty: any write now needs new space.
        db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill_filesystem(disk)
        with pytest.raises(StorageError, match="disk is full"):
            produce(db, config.source, 1)
        assert outbox.last_seq(db) == 300  # nothing half-written
        log = tmp_path / "agent.log"
        gw_db = tmp_path / "gateway.db"
        gateway = gateway_thread(broker.port, gw_db) if e2e else contextlib.nullcontext()
        with Recorder(broker.port) as rec, gateway:
            proc = agent_process(config_path, log)
            try:
                rec.wait_for(lambda r: len(r.distinct_event_ids()) == 300, 40, "all delivered")
                # The agent could record none of it: the disk really is full.
                assert undelivered(db) == 300
                assert "cannot mark" in log.read_text() or "cannot record" in log.read_text()
                rec.wait_for(
                    lambda r: any(m.json()["disk_free_mb"] == 0 for m in r.on("telemetry")),
                    10,
                    "telemetry reporting the full disk",
                )
                # Idle on a full disk: no busy loop of failing writes, no flood of log lines.
                cpu, lines = cpu_seconds(proc.pid), len(log.read_text().splitlines())
                time.sleep(3)
                assert proc.poll() is None, log.read_text()[-3000:]
                assert cpu_seconds(proc.pid) - cpu < 0.6
                assert len(log.read_text().splitlines()) - lines <= 6, log.read_text()[-3000:]
                assert len(rec.events()) == 300  # each sent once while the link stayed up
                # A command that needs a write is refused with the reason, and not half-done.
                cmd_id = str(uuid.uuid4())
                command = {"id": cmd_id, "command": "resend_from", "args": {"seq": 1}}
                rec.client.publish(f"{config.topic_prefix}/commands", json.dumps(command), 1)
                rec.wait_for(
                    lambda r: any(m.json()["id"] == cmd_id for m in r.on("replies")), 10, "reply"
                )
                reply = next(m.json() for m in rec.on("replies") if m.json()["id"] == cmd_id)
                assert reply["ok"] is False and "not stored" in reply["error"], reply
                assert len(rec.events()) == 300 and undelivered(db) == 300
                # A restart on the full disk: the kiosk holds the WAL index open, so the new
                # agent reads the file; knowing nothing delivered, it sends again.
                assert stop_agent(proc, log) == 0
                proc = agent_process(config_path, log)
                rec.wait_for(
                    lambda r: any(
                        m.json().get("pid") == proc.pid and m.json()["state"] == "online"
                        for m in r.on("status")
                    ),
                    20,
                    "the restarted agent online",
                )
                if not e2e:
                    rec.wait_for(lambda r: len(r.events()) == 600, 30, "sent again")
                # Room again: the marks catch up, the kiosk writes again, delivery goes on.
                filler.unlink()
                wait_until(lambda: undelivered(db) == 0, 30, "marks recorded")
                stored += produce(db, config.source, 50, per_transaction=10)
                wait_until(lambda: undelivered(db) == 0, 30, "new events delivered")
                rec.wait_for(lambda r: len(r.distinct_event_ids()) == 350, 20, "recorded")
            finally:
                code = stop_agent(proc, log)
            assert code == 0, log.read_text()[-3000:]
        db.conn.close()
    result = audit(stored, rec.events())
    assert result.ok and result.distinct == 350, result
    # Nothing twice except what the restart sent again (dropped by id).
    assert max(Counter(e["id"] for e in rec.events()).values()) <= 2
    assert "Traceback" not in log.read_text()
    if e2e:
        assert [e["seq"] for e in gateway_events(gw_db)] == list(range(1, 351))


@pytest.mark.skipif(
    not may_mount(), reason="a real full file system needs root that may mount a tmpfs"
)
@pytest.mark.timeout(90)
def test_agent_waits_while_a_full_disk_leaves_no_room_to_open_the_database(
    tmp_path: Path, broker: Broker
) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        config_path, config = station_config(tmp_path, broker.url, storage=disk / "station.db")
        db = station_db(config)
        stored = produce(db, config.source, 100, per_transaction=20)
        db.conn.close()  # the last connection: SQLite removes the WAL and its index
        filler = fill_filesystem(disk)
        assert not (disk / "station.db-shm").exists()
        # Even reading needs room for the WAL index now.
        with pytest.raises(StorageError, match="bytes free"):
            station_db(config)
        log = tmp_path / "agent.log"
        with Recorder(broker.port) as rec:
            proc = agent_process(config_path, log)
            try:
                wait_until(lambda: log.read_text().count("next try in") >= 2, 20, "retrying")
                # Waiting in the process, not exiting to be started again every few seconds.
                assert proc.poll() is None, log.read_text()
                assert "bytes free" in log.read_text()
                filler.unlink()
                rec.wait_for(lambda r: len(r.distinct_event_ids()) == 100, 20, "delivered")
            finally:
                code = stop_agent(proc, log)
            assert code == 0, log.read_text()[-3000:]
            # SIGTERM while waiting for room: a clean, prompt exit.
            filler = fill_filesystem(disk)
            assert not (disk / "station.db-shm").exists()
            proc = agent_process(config_path, log)
            wait_until(lambda: log.read_text().count("next try in") >= 3, 20, "waiting again")
            assert stop_agent(proc, log, timeout=5) == 0
            filler.unlink()
        db = station_db(config)
        assert undelivered(db) == 0
        db.conn.close()
    result = audit(stored, rec.events())
    assert result.ok and result.distinct == 100, result
    assert "Traceback" not in log.read_text()


@pytest.mark.timeout(60)
def test_unacknowledged_events_are_sent_again_after_the_ack_timeout(
    tmp_path: Path, broker: Broker
) -> None:
    # No gateway is subscribed yet: the broker PUBACKs and drops the events (no session
    # holds them). Without a reconnect, the ack timeout alone must bring them back.
    _, config = station_config(tmp_path, broker.url, end_to_end_ack=True, ack_timeout_s=1.0)
    db = station_db(config)
    gw_db = tmp_path / "gateway.db"
    with agent_thread(config) as agent:
        produce(db, config.source, 40, per_transaction=4)
        wait_until(lambda: _published_not_acked(db) == 40, 20, "PUBACKed into the void")
        conn_before = agent.conn_no
        with gateway_thread(broker.port, gw_db, client_id="late-gateway"):
            wait_until(lambda: undelivered(db) == 0, 20, "sent again and acknowledged")
        assert agent.conn_no == conn_before  # no reconnect was needed
    stored = gateway_events(gw_db)
    assert [e["seq"] for e in stored] == list(range(1, 41))


def test_reconnect_backoff_is_capped_exponential_with_jitter() -> None:
    jitter = iter([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    delays = [reconnect_delay(n, 0.5, 8.0, lambda: next(jitter)) for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 4.0, 4.0]


@pytest.mark.skipif(
    not may_mount(), reason="a real filling file system needs root that may mount a tmpfs"
)
@pytest.mark.timeout(60)
def test_a_filling_disk_raises_storage_low_once_and_clears_it_with_room_again(
    tmp_path: Path, broker: Broker
) -> None:
    with small_tmpfs(tmp_path / "disk", "32m") as disk:
        _, config = station_config(
            tmp_path,
            broker.url,
            storage=disk / "station.db",
            min_free_mb=8,
            telemetry_interval_s=0.3,
        )
        db = station_db(config)
        produce(db, config.source, 3)
        with Recorder(broker.port) as rec, agent_thread(config, storage_check_s=0.1):
            rec.wait_for(lambda r: len(r.events()) == 3, 15, "the first events")
            time.sleep(0.3)  # a few checks with room: nothing raised
            assert [e["type"] for e in rec.events()] == [all_events(db)[0]["type"]] * 3
            free = shutil.disk_usage(disk).free
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (free - 5 * 2**20))  # leaves about 5 MB of 32
            rec.wait_for(
                lambda r: any(e["type"] == "sampling.alert.raised" for e in r.events()),
                10,
                "storage_low raised",
            )
            rec.wait_for(
                lambda r: "storage_low" in r.on("telemetry")[-1].json()["alerts"],
                10,
                "telemetry listing the standing alert",
            )
            produce(db, config.source, 2)  # the station keeps working meanwhile
            time.sleep(0.5)  # more checks below the floor: still one alert
            filler.unlink()
            rec.wait_for(
                lambda r: any(e["type"] == "sampling.alert.cleared" for e in r.events()),
                10,
                "storage_low cleared",
            )
        alerts = [e for e in rec.events() if "alert" in e["type"]]
        assert [(e["type"], e["data"]["kind"]) for e in alerts] == [
            ("sampling.alert.raised", "storage_low"),
            ("sampling.alert.cleared", "storage_low"),
        ]
        assert "below storage.min_free_mb 8 MB" in alerts[0]["data"]["detail"]
        assert alerts[1]["data"]["raised_seq"] == alerts[0]["seq"]
        for event in rec.events():
            validate_event(event)
        assert [e["seq"] for e in rec.events()] == list(range(1, 8))
        assert outbox.read_state(db)["alert.storage_low"] is None
        db.conn.close()
