"""Bad input at the gateway: each a logged, counted rejection or a wait; never a crash, never an
ack for what is not stored. With a real broker, on both stores; a real PostgreSQL that goes
away for 20 s; a real file system that fills up."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge_agent.gateway import Intake
from tests.support.edge import (
    agent_thread,
    all_events,
    fill_filesystem,
    gateway_events,
    gateway_thread,
    may_mount,
    produce,
    small_tmpfs,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_events import event_bytes, event_dict, topic
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker
from tests.support.postgres import PgCluster


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "gateway.db")
    return str(request.getfixturevalue("pg_url"))


def acks_of(recorder: Recorder) -> list[tuple[str, int]]:
    return [(m.topic.split("/")[2], m.json()["through"]) for m in recorder.on("acks")]


@pytest.mark.timeout(60)
def test_bad_messages_are_counted_and_logged_never_stored_never_acked(
    broker: Broker, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    first = event_dict(1)
    bad = [
        (topic(), b"{not json"),
        (topic(), json.dumps({**event_dict(2), "seq": "two"}).encode()),
        (topic(), event_bytes(2, type_="sampling.tube.teleported")),
        (topic(station="K99"), event_bytes(1, station="K99")),  # not the township's
        (topic(), json.dumps(first).encode()),  # a repeat
        (topic(), event_bytes(1)),  # a seq from the past, under a new id
        (topic(kind="status"), b'{"state": "sleeping"}'),
    ]
    listed = Intake(frozenset({("T01", "K03"), ("T01", "K04")}))
    with (
        Recorder(broker.port, ["sampling/+/+/acks"], client_id="acks", persistent=False) as acks,
        gateway_thread(broker.port, target, intake=listed) as gw,
        Recorder(broker.port, [], client_id="pub", persistent=False) as pub,
    ):
        pub.client.publish(topic(), json.dumps(first).encode(), qos=1).wait_for_publish(5)
        wait_until(lambda: gw.stats.stored == 1, 10, "the first event stored")
        for on, payload in bad:
            pub.client.publish(on, payload, qos=1).wait_for_publish(5)
        pub.client.publish(topic(), event_bytes(2), qos=1).wait_for_publish(5)
        wait_until(lambda: gw.stats.stored == 2, 10, "the second event stored")
        wait_until(lambda: sum(gw.stats.rejected.values()) == 6, 10, "every rejection")
        assert gw.connected.is_set()  # still running, still connected
        assert dict(gw.stats.rejected) == {
            "not_json": 1,
            "schema": 2,
            "unknown_type": 1,
            "unknown_station": 1,
            "conflict": 1,
        }
        assert gw.stats.repeats == 1
        acks.wait_for(lambda r: ("K03", 2) in acks_of(r), 10, "the ack through 2")
        time.sleep(0.3)  # an ack for K99 would have come by now
        assert {s for s, _ in acks_of(acks)} == {"K03"}
        assert max(n for _, n in acks_of(acks)) == 2
    stored = gateway_events(target)
    assert [(e["source"], e["seq"]) for e in stored] == [
        ("urn:sampling:T01:K03", s) for s in (1, 2)
    ]
    assert stored[0]["id"] == first["id"]
    logged = [r.getMessage() for r in caplog.records if "rejected a message" in r.getMessage()]
    assert len(logged) == 5 and any("(unknown_station)" in m for m in logged), logged
    assert any("already stored as another event" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(120)
def test_the_database_gone_for_20_s_is_waited_for_and_nothing_is_lost(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    cluster = PgCluster()
    cluster.start()
    try:
        url = cluster.create_database("gateway")
        _, config = station_config(tmp_path, broker.url, end_to_end_ack=True, ack_timeout_s=2.0)
        db = station_db(config)
        with gateway_thread(broker.port, url) as gw, agent_thread(config) as agent:
            produce(db, config.source, 50, per_transaction=5)
            wait_until(lambda: agent.acked_through == 50, 20, "the first 50 acknowledged")
            cluster.stop()
            produce(db, config.source, 50, per_transaction=5)
            wait_until(gw.waiting_for_store.is_set, 20, "the gateway waiting for its database")
            gone = time.monotonic()
            while time.monotonic() - gone < 20:
                assert agent.acked_through == 50, "acknowledged what is not stored"
                time.sleep(0.5)
            assert gw.stats.storage_failures >= 3 and undelivered(db) == 50
            cluster.start()
            wait_until(lambda: undelivered(db) == 0, 30, "the rest acknowledged after the return")
            assert not gw.waiting_for_store.is_set()
        stored = gateway_events(url)
        assert [e["seq"] for e in stored] == list(range(1, 101))
        assert audit(all_events(db), stored).ok
    finally:
        cluster.close()
        broker.stop()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not may_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_under_sqlite_is_waited_for_and_nothing_is_lost(
    tmp_path: Path, broker: Broker
) -> None:
    with (
        small_tmpfs(tmp_path / "small", "2m") as disk,
        Recorder(broker.port, ["sampling/+/+/acks"], client_id="acks", persistent=False) as acks,
        gateway_thread(broker.port, str(disk / "gateway.db")) as gw,
        Recorder(broker.port, [], client_id="pub", persistent=False) as pub,
    ):
        pub.client.publish(topic(), event_bytes(1), qos=1).wait_for_publish(5)
        acks.wait_for(lambda r: ("K03", 1) in acks_of(r), 10, "the first ack")
        filler = fill_filesystem(disk)
        wide = {"tube": "T" * 64, "resident": "r" * 64, "position": 1}
        for seq in range(2, 40):
            pub.client.publish(topic(), event_bytes(seq, data=wide), qos=1)
        wait_until(lambda: gw.stats.storage_failures >= 2, 20, "a failed commit")
        assert gw.waiting_for_store.is_set() and gw.connected.is_set()
        assert {n for _, n in acks_of(acks)} == {1}, "acknowledged what is not stored"
        filler.unlink()
        acks.wait_for(lambda r: ("K03", 39) in acks_of(r), 20, "everything acknowledged")
        seqs = gw.store.query("SELECT seq FROM events ORDER BY seq")
        assert [s for (s,) in seqs] == list(range(1, 40))
