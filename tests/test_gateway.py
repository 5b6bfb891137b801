"""The gateway consumer with a real broker, on both stores: shared subscriptions, acks only for
what is committed, the station list, the `station gateway` process."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent import outbox
from edge_agent.gateway import Gateway, open_store
from edge_agent.link import LinkSettings
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
from tests.support.gateway_events import event_bytes, topic
from tests.support.gateway_recorder import Recorder, audit
from tests.support.mosquitto import Broker


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "gateway.db")
    return str(request.getfixturevalue("pg_url"))


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
def test_two_gateways_share_the_load_and_ack_everything(
    tmp_path: Path, broker: Broker, target: str
) -> None:
    _, config = station_config(tmp_path, broker.url, end_to_end_ack=True)
    db = station_db(config)
    with (
        gateway_thread(broker.port, target, "gw-a") as ga,
        gateway_thread(broker.port, target, "gw-b") as gb,
        agent_thread(config) as agent,
    ):
        produce(db, config.source, 300, per_transaction=10)
        wait_until(lambda: undelivered(db) == 0, 30, "acknowledged end to end")
        assert agent.acked_through == 300
        assert ga.stats.stored > 0 and gb.stats.stored > 0
        assert ga.stats.stored + gb.stats.stored == 300
    stored = gateway_events(target)
    assert [e["seq"] for e in stored] == list(range(1, 301))
    assert audit(all_events(db), stored).ok


@pytest.mark.timeout(60)
def test_acks_say_only_what_is_committed(tmp_path: Path, broker: Broker, target: str) -> None:
    with (
        Recorder(broker.port, ["sampling/+/+/acks"], client_id="acks", persistent=False) as acks,
        gateway_thread(broker.port, target) as gw,
        Recorder(broker.port, [], client_id="k03", persistent=False) as station,
    ):
        for seq in (1, 2, 4, 5):
            station.client.publish(topic(), event_bytes(seq), qos=1).wait_for_publish(5)
        wait_until(lambda: gw.stats.stored == 4, 10, "four stored")
        acks.wait_for(lambda r: bool(r.on("acks")), 5, "an ack")
        # seq 3 is missing: the ack stops before the gap, however often it is said.
        assert {m.json()["through"] for m in acks.on("acks")} == {2}
        station.client.publish(topic(), event_bytes(3), qos=1).wait_for_publish(5)
        acks.wait_for(lambda r: r.on("acks")[-1].json()["through"] == 5, 5, "through 5")
        with open_store(target) as store:
            for m in acks.on("acks"):
                through = m.json()["through"]
                rows = store.query(
                    "SELECT count(*) FROM events WHERE station = %s AND seq <= %s",
                    ("K03", through),
                )
                assert rows == [(through,)]  # every acknowledged seq is in the database
    # Retained: a station that connects later reads where it stands.
    with Recorder(broker.port, ["sampling/T01/K03/acks"], client_id="late", persistent=False) as r:
        r.wait_for(lambda x: bool(x.on("acks")), 5, "the retained ack")
        ack = r.on("acks")[0]
        assert ack.retain and ack.json()["through"] == 5 and set(ack.json()) == {"through", "time"}
        # The gateway's own clock when it sent the ack (docs/events.md), RFC 3339 UTC.
        said = outbox.parse_rfc3339(ack.json()["time"])
        assert said is not None and abs(said - time.time()) < 60


@pytest.mark.timeout(60)
def test_status_and_telemetry_fill_the_station_list(
    tmp_path: Path, broker: Broker, target: str
) -> None:
    with Recorder(broker.port, [], client_id="k03", persistent=False) as k03:
        # Published before any gateway runs: the retained status still reaches it.
        k03.client.publish(
            topic(kind="status"), json.dumps({"state": "online", "release": "r12"}), 1, True
        ).wait_for_publish(5)
        with gateway_thread(broker.port, target) as gw:
            wait_until(lambda: gw.stats.station_messages >= 1, 10, "the retained status")
            k03.client.publish(
                topic(kind="telemetry"), json.dumps({"outbox_depth": 3, "alerts": {}}), 0
            ).wait_for_publish(5)
            wait_until(lambda: gw.stats.station_messages >= 2, 10, "the telemetry")
            k03.client.publish(
                topic(station="K04", kind="status"), json.dumps({"state": "offline"}), 1, True
            ).wait_for_publish(5)
            wait_until(lambda: gw.stats.station_messages >= 3, 10, "K04's status")
    with open_store(target) as store:
        rows = store.query(
            "SELECT station, online, release, telemetry FROM stations ORDER BY station"
        )
    assert [(s, o, r) for s, o, r, _ in rows] == [("K03", 1, "r12"), ("K04", 0, None)]
    assert json.loads(rows[0][3]) == {"outbox_depth": 3, "alerts": {}}


@pytest.mark.timeout(90)
def test_station_gateway_process_stores_and_acks(
    tmp_path: Path, broker: Broker, target: str
) -> None:
    log = tmp_path / "gateway.log"
    stations = tmp_path / "stations.txt"
    stations.write_text("# the township's tents\nT01/K03\n")
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
                target,
                "--client-id",
                "gw-proc",
                "--stations",
                str(stations),
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
        # The agent said goodbye when it stopped.
        wait_until(lambda: _online(target) is False, 10, "K03 offline in the station list")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    assert rc == 0, log.read_text()
    assert [e["seq"] for e in gateway_events(target)] == list(range(1, 121))
    status = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "gateway", "status", "--db", target, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (k03,) = json.loads(status.stdout)
    assert (k03["station"], k03["through"], k03["waiting"], k03["online"]) == (
        "K03",
        120,
        0,
        False,
    )


def _online(target: str) -> bool | None:
    with open_store(target) as store:
        states = store.station_states()
    return states[0].online if states else None


@pytest.mark.timeout(60)
def test_a_slow_store_holds_the_link_and_memory_stays_bounded(
    tmp_path: Path, broker: Broker
) -> None:
    """While the store cannot keep up, the broker keeps what the gateway has no room for."""
    db = tmp_path / "gw.db"
    with (
        Recorder(broker.port, ["sampling/+/+/acks"], client_id="acks", persistent=False) as acks,
        gateway_thread(broker.port, db, queue_max=50) as gw,
        Recorder(broker.port, [], client_id="k03", persistent=False) as station,
    ):
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file: the store waits
        try:
            for seq in range(1, 1001):
                station.client.publish(topic(), event_bytes(seq), qos=1)
            wait_until(gw.events.full, 10, "the gateway's queue full")
            time.sleep(0.5)
            assert gw.events.qsize() == 50 and gw.stats.stored == 0
        finally:
            blocker.rollback()
            blocker.close()
        acks.wait_for(
            lambda r: 1000 in [m.json()["through"] for m in r.on("acks")], 60, "all acked"
        )
    assert [e["seq"] for e in gateway_events(str(db))] == list(range(1, 1001))


def test_a_stop_from_a_signal_handler_takes_no_lock(tmp_path: Path, broker: Broker) -> None:
    """`station gateway`'s SIGTERM handler runs on the main thread between two bytecodes,
    perhaps while that thread holds the queue's lock (it hung a gateway so, once)."""
    settings = LinkSettings("127.0.0.1", broker.port, "gw-stop", tls=False, allow_plaintext=True)
    with open_store(tmp_path / "gw.db") as store:
        gw = Gateway(store, settings)
        with gw.events.mutex:  # what the interrupted thread may hold
            gw.request_stop(from_signal=True)  # would never return if it took that lock
        t = threading.Thread(target=gw.run, name="gateway-under-test", daemon=True)
        t.start()
        t.join(5)
        assert not t.is_alive()


def test_station_gateway_refuses_bad_arguments(tmp_path: Path) -> None:
    bad_list = tmp_path / "stations.txt"
    bad_list.write_text("T01/K03\nK04\n")
    for args, why in (
        (["--broker", "http://x", "--db", "x.db"], "must look like mqtts://host:port"),
        (["--broker", "mqtt://127.0.0.1:1883", "--db", "x.db"], "without TLS"),
        (["--broker", "mqtts://127.0.0.1:1883"], "--db"),
        (
            ["--broker", "mqtts://h:1", "--db", "x.db", "--stations", str(bad_list)],
            "'K04' is not township/station",
        ),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "kiosk_ui.cli", "gateway", *args],
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode != 0
        assert why in out.stderr
