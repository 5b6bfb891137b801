"""Several `station gateway` processes on one shared subscription and one PostgreSQL: they
split the load, and one killed with SIGKILL in the middle of a drain loses nothing and
duplicates nothing."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import pytest

from edge_agent.gateway import open_store
from tests.support.edge import (
    agent_thread,
    all_events,
    gateway_events,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway import gateway_process, stop_gateway
from tests.support.gateway_recorder import audit
from tests.support.mosquitto import Broker

STATIONS = ("K01", "K02", "K03")
BACKLOG = 2000


def stored(url: str) -> int:
    with open_store(url) as store:
        return int(store.query("SELECT count(*) FROM events")[0][0])


def stored_by(log: Path) -> int:
    found = re.findall(r"gateway stopped: stored (\d+)", log.read_text())
    assert found, log.read_text()[-2000:]
    return int(found[-1])


@pytest.mark.timeout(180)
def test_a_killed_instance_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, broker: Broker, pg_url: str
) -> None:
    stations = []
    for name in STATIONS:
        _, config = station_config(
            tmp_path / name, broker.url, station=name, end_to_end_ack=True, ack_timeout_s=2.0
        )
        db = station_db(config)
        produce(db, config.source, BACKLOG, per_transaction=200)
        stations.append((config, db))
    logs = [tmp_path / f"gw-{n}.log" for n in range(3)]
    procs = [
        gateway_process(broker.url, pg_url, f"gw-{n}", log, "--session-expiry", "3")
        for n, log in enumerate(logs)
    ]
    try:
        for log in logs:
            wait_until(lambda log=log: "gateway connected" in log.read_text(), 20, "connected")
        with ExitStack() as agents:
            for config, _db in stations:
                agents.enter_context(agent_thread(config))
            total = BACKLOG * len(STATIONS)
            wait_until(lambda: stored(pg_url) >= total // 5, 60, "a fifth stored")
            procs[0].kill()  # SIGKILL mid-drain: whatever it held is gone with it
            procs[0].wait(5)
            assert stored(pg_url) < total, "the drain ended before the kill: nothing tested"
            for _config, db in stations:
                wait_until(lambda db=db: undelivered(db) == 0, 120, "acknowledged after the kill")
        survivors = [stop_gateway(p, log) for p, log in zip(procs[1:], logs[1:], strict=True)]
        assert survivors == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    # Both survivors did their share; together with the dead one they stored each event once.
    assert stored_by(logs[1]) > 0 and stored_by(logs[2]) > 0
    events = gateway_events(pg_url)
    assert len(events) == BACKLOG * len(STATIONS)
    with open_store(pg_url) as store:
        for (config, db), name in zip(stations, STATIONS, strict=True):
            mine = [e for e in events if e["source"] == config.source]
            assert [e["seq"] for e in mine] == list(range(1, BACKLOG + 1)), name
            assert audit(all_events(db), mine).ok
            assert store.through("T01", name) == BACKLOG
        assert store.waiting() == {}
