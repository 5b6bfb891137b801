"""The real `station agent` process: SIGKILL at random moments, SIGTERM, the CLI."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent import outbox
from edge_agent.db import write_transaction
from tests.support.edge import (
    ROOT,
    agent_process,
    all_events,
    gateway_events,
    gateway_thread,
    produce,
    station_config,
    station_db,
    stop_agent,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker
from tests.support.ports import free_port


def _delivered(db) -> int:  # type: ignore[no-untyped-def]
    return int(
        db.conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL").fetchone()[0]
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("e2e", [False, True], ids=["puback", "end-to-end-ack"])
def test_sigkill_at_random_moments_during_a_10000_event_drain_loses_nothing(
    tmp_path: Path, broker: Broker, e2e: bool
) -> None:
    config_path, config = station_config(tmp_path, broker.url, end_to_end_ack=e2e)
    db = station_db(config)
    gw_db = tmp_path / "gateway.db"
    gateway = gateway_thread(broker.port, gw_db) if e2e else contextlib.nullcontext()
    produce(db, config.source, 10_000, per_transaction=500)
    rng = random.Random(20261123)
    log = tmp_path / "agent.log"
    kills = 0
    progress: list[int] = []
    with Recorder(broker.port) as rec, gateway:
        for _ in range(6):
            before = _delivered(db)
            proc = agent_process(config_path, log)
            try:
                # Kill at a random moment once the drain is under way.
                wait_until(
                    lambda b=before, p=proc: _delivered(db) > b or p.poll() is not None,
                    20,
                    "the agent delivering",
                )
                time.sleep(rng.uniform(0.0, 0.1))
                assert proc.poll() is None, log.read_text()
                proc.send_signal(signal.SIGKILL)
                kills += 1
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
            progress.append(_delivered(db))
            if undelivered(db) == 0:
                break
        assert kills >= 4, f"the drain outran the kills: delivered after each {progress}"
        proc = agent_process(config_path, log)
        try:
            wait_until(lambda: undelivered(db) == 0, 60, "the drain completed")
        finally:
            assert stop_agent(proc, log) == 0, log.read_text()[-3000:]
        rec.wait_for(lambda r: len(r.distinct_event_ids()) >= 10_000, 20, "all recorded")
        received = rec.events()
    result = audit(all_events(db), received)
    assert result.ok, (
        result.lost[:10],
        result.duplicated_after_dedupe[:10],
        result.out_of_order[:10],
    )
    assert result.distinct == 10_000
    assert result.received >= 10_000  # repeats after a kill are allowed, losses are not
    if e2e:
        stored = gateway_events(gw_db)
        assert [e["seq"] for e in stored] == list(range(1, 10_001))
        assert audit(all_events(db), stored).ok


@pytest.mark.timeout(60)
def test_sigterm_finishes_in_flight_and_goes_offline(tmp_path: Path, broker: Broker) -> None:
    config_path, config = station_config(tmp_path, broker.url, inflight_window=20)
    db = station_db(config)
    produce(db, config.source, 3000, per_transaction=500)
    log = tmp_path / "agent.log"
    with Recorder(broker.port) as rec:
        proc = agent_process(config_path, log)
        try:
            wait_until(lambda: _delivered(db) > 100, 20, "the drain under way")
        finally:
            # in-flight wait, the offline status and the network thread's join are each
            # bounded (about 12 s together); stop_agent allows for a loaded machine
            rc = stop_agent(proc, log)
        assert rc == 0, log.read_text()
        delivered = [
            s
            for (s,) in db.conn.execute(
                "SELECT seq FROM outbox WHERE delivered_at IS NOT NULL ORDER BY seq"
            )
        ]
        time.sleep(0.5)
        seen = {e["seq"] for e in rec.events()}
        status = [m.json()["state"] for m in rec.on("status")]
    # What was in flight was acknowledged and marked: the broker got exactly the delivered
    # prefix, nothing half-way.
    assert delivered == list(range(1, len(delivered) + 1))
    assert seen == set(delivered)
    assert status[0] == "online" and status[-1] == "offline"
    state = outbox.read_state(db)
    assert state["link.state"] == "stopped"
    # The retained status a newcomer sees is 'offline'.
    with Recorder(
        broker.port, ["sampling/T01/K03/status"], client_id="late", persistent=False
    ) as late:
        late.wait_for(lambda r: bool(r.on("status")), 5, "the retained status")
        retained = late.on("status")[0]
    assert retained.retain and retained.json()["state"] == "offline"
    assert retained.json()["reason"] == "stopped"


def _station(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_prints_outbox_and_link_state(tmp_path: Path) -> None:
    config_path, config = station_config(tmp_path, "mqtt://127.0.0.1:1")
    db = station_db(config)
    produce(db, config.source, 7)
    outbox.mark_delivered(db, [1, 2, 3])
    with write_transaction(db) as conn:
        outbox.set_state(conn, "link.state", "offline")
        outbox.set_state(conn, "link.error", "cannot reach 127.0.0.1:1")
        outbox.set_state(conn, "kiosk.queue_length", 4)
    out = _station("agent", "status", "--config", str(config_path))
    assert out.returncode == 0, out.stderr
    assert "waiting to deliver  4" in out.stdout
    assert "delivered through seq 3" in out.stdout
    assert "offline" in out.stdout and "cannot reach" in out.stdout
    assert "kiosk queue         4" in out.stdout
    js = _station("agent", "status", "--json", "--config", str(config_path))
    data = json.loads(js.stdout)
    assert data["outbox_depth"] == 4 and data["last_seq"] == 7
    assert data["kiosk_queue_length"] == 4


def test_agent_refuses_a_configuration_error_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    config_path, _ = station_config(tmp_path, "mqtt://127.0.0.1:1")
    bad.write_text(
        config_path.read_text().replace("allow_plaintext = true", "allow_plaintext = false")
    )
    out = _station("agent", "--config", str(bad))
    assert out.returncode == 2
    assert "mqtt:// sends sample records in clear text" in out.stderr


@pytest.mark.timeout(30)
def test_sigterm_without_a_broker_exits_cleanly(tmp_path: Path) -> None:
    config_path, config = station_config(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    db = station_db(config)
    produce(db, config.source, 5)
    log = tmp_path / "agent.log"
    proc = agent_process(config_path, log)
    try:
        wait_until(
            lambda: outbox.read_state(db).get("link.error") is not None,
            15,
            "the agent trying to connect",
        )
    finally:
        rc = stop_agent(proc, log)
    assert rc == 0, log.read_text()
    assert outbox.read_state(db)["link.state"] == "stopped"
    assert undelivered(db) == 5
    assert "cannot reach" in log.read_text()
