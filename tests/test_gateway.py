"""The reference gateway consumer: dedupe by id, gaps in seq, acks, shared subscriptions."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent import commands, gateway_cli
from edge_agent.gateway import open_store
from tests.support.edge import (
    ROOT,
    agent_thread,
    all_events,
    gateway_events,
    gateway_thread,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker

TOPIC = "sampling/T01/K03/events"


def _event(seq: int, ev_id: str | None = None, source: str = "urn:sampling:T01:K03") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": ev_id or f"id-{seq}",
            "source": source,
            "type": "sampling.tube.member_added",
            "time": "2026-11-23T08:00:00.000Z",
            "seq": seq,
            "data": {"tube": "T1", "resident": f"r{seq}", "position": 1},
        }
    ).encode()


def test_store_waits_for_gaps_and_drops_repeats(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    advanced, stored, repeats = store.store(
        [(TOPIC, _event(1)), (TOPIC, _event(2)), (TOPIC, _event(4)), (TOPIC, _event(5))]
    )
    assert (stored, repeats) == (4, 0)
    assert advanced == {("T01", "K03"): 2}  # 3 is missing: the ack stops before the gap
    assert store.waiting() == {("T01", "K03"): 2}
    advanced, stored, repeats = store.store([(TOPIC, _event(2)), (TOPIC, _event(3))])
    assert (stored, repeats) == (1, 1)
    assert advanced == {("T01", "K03"): 5}
    assert store.waiting() == {}
    # A repeat alone still re-announces the station's ack (the last one may have been lost).
    advanced, stored, repeats = store.store([(TOPIC, _event(5))])
    assert (advanced, stored, repeats) == ({("T01", "K03"): 5}, 0, 1)
    n = store.db.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert n == 5


def test_store_rejects_malformed_and_mismatched_messages(tmp_path: Path) -> None:
    store = open_store(tmp_path / "gw.db")
    batch = [
        (TOPIC, b"{not json"),
        (TOPIC, json.dumps([1, 2]).encode()),
        (TOPIC, _event(0)),
        (TOPIC, _event(1, source="urn:sampling:T01:K99")),  # a station speaking for another
        ("sampling/T01/K03/status", _event(1)),
        (TOPIC, _event(1, ev_id="a")),
        (TOPIC, _event(1, ev_id="b")),  # same seq, another id: first kept, logged
    ]
    advanced, stored, repeats = store.store(batch)
    assert (stored, repeats) == (1, 1)
    assert advanced == {("T01", "K03"): 1}
    assert store.db.conn.execute("SELECT id FROM events").fetchall() == [("a",)]


@pytest.mark.timeout(60)
def test_two_consumers_on_a_shared_subscription_see_each_event_once(
    tmp_path: Path, broker: Broker
) -> None:
    _, config = station_config(tmp_path, broker.url)
    db = station_db(config)
    share = "$share/audit/sampling/+/+/events"
    with (
        Recorder(broker.port, [share], client_id="c1") as c1,
        Recorder(broker.port, [share], client_id="c2") as c2,
        agent_thread(config),
    ):
        produce(db, config.source, 400, per_transaction=20)
        wait_until(lambda: undelivered(db) == 0, 30, "delivered")
        wait_until(lambda: len(c1.events()) + len(c2.events()) >= 400, 10, "all consumed")
        a, b = c1.events(), c2.events()
    ids_a, ids_b = [e["id"] for e in a], [e["id"] for e in b]
    assert len(ids_a) == len(set(ids_a)) and len(ids_b) == len(set(ids_b))
    assert not set(ids_a) & set(ids_b)
    assert a and b, "the broker should split the load between both consumers"
    # Between them: nothing lost, nothing twice; each consumer sees its share in order.
    result = audit(all_events(db), sorted(a + b, key=lambda e: e["seq"]))
    assert result.ok and result.received == 400 and result.distinct == 400, result
    assert audit(a, a).ok and audit(b, b).ok


@pytest.mark.timeout(60)
def test_two_reference_gateways_share_the_load_and_ack_everything(
    tmp_path: Path, broker: Broker
) -> None:
    _, config = station_config(tmp_path, broker.url, end_to_end_ack=True)
    db = station_db(config)
    gw_db = tmp_path / "gateway.db"
    with (
        gateway_thread(broker.port, gw_db, "gw-a") as ga,
        gateway_thread(broker.port, gw_db, "gw-b") as gb,
        agent_thread(config) as agent,
    ):
        produce(db, config.source, 300, per_transaction=10)
        wait_until(lambda: undelivered(db) == 0, 30, "acknowledged end to end")
        assert agent.acked_through == 300
        assert ga.stats.stored > 0 and gb.stats.stored > 0
        assert ga.stats.stored + gb.stats.stored == 300
    stored = gateway_events(gw_db)
    assert [e["seq"] for e in stored] == list(range(1, 301))
    assert audit(all_events(db), stored).ok


def test_docs_name_every_command_and_gateway_option() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "edge-agent.md").read_text()
    for name in commands.COMMANDS:
        assert f"`{name}`" in text, name
    parser = argparse.ArgumentParser()
    gateway_cli.configure(parser)
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    missing = [o for o in options if o != "--help" and f"`{o}`" not in text]
    assert missing == []


@pytest.mark.timeout(60)
def test_station_gateway_process_stores_and_acks(tmp_path: Path, broker: Broker) -> None:
    gw_db = tmp_path / "gateway.db"
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kiosk_ui.cli",
                "-v",
                "gateway",
                "--broker",
                broker.url,
                "--allow-plaintext",
                "--db",
                str(gw_db),
                "--client-id",
                "gw-proc",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Until the gateway has subscribed, the broker drops events; the ack timeout resends.
        _, config = station_config(tmp_path, broker.url, end_to_end_ack=True, ack_timeout_s=2.0)
        db = station_db(config)
        produce(db, config.source, 120, per_transaction=12)
        with agent_thread(config) as agent:
            wait_until(lambda: undelivered(db) == 0, 30, "acknowledged by `station gateway`")
            assert agent.acked_through == 120
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    assert rc == 0, log.read_text()
    assert [e["seq"] for e in gateway_events(gw_db)] == list(range(1, 121))


def test_station_gateway_refuses_a_bad_url_and_clear_text() -> None:
    for args, why in (
        (["--broker", "http://x", "--db", "x.db"], "must look like mqtts://host:port"),
        (["--broker", "mqtt://127.0.0.1:1883", "--db", "x.db"], "without TLS"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "kiosk_ui.cli", "gateway", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode != 0
        assert why in out.stderr
