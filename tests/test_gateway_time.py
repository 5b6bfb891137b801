"""The gateway's time as a source for the station's clock: the real gateway (SQLite store)
says its clock on every ack, the real agent records it with the station's clock then, and the
kiosk's clock judge (its simulated sources: no NTP, no real-time clock) trusts the clock by
the gateway only when the two agreed. A time that is not one is logged and ignored."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge_agent import health, outbox
from edge_agent.db import Database
from firmware.config import StationConfig
from kiosk_ui.clock_sources import SimClock, build_judge, recorded_gateway_time
from kiosk_ui.core.clock import ClockJudge
from tests.support.edge import (
    agent_thread,
    gateway_events,
    gateway_thread,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker


def untrusted_station_judge(config: StationConfig, db: Database) -> ClockJudge:
    sim = SimClock()
    sim.synchronise(False)  # no NTP; the configuration fits no real-time clock
    return build_judge(config, lambda: 0.0, sim, lambda: recorded_gateway_time(db.conn))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("gateway_off_s", "trusted"), [(0.0, True), (600.0, False)])
def test_an_acked_event_lets_the_gateway_vouch_for_the_station_clock(
    tmp_path: Path, broker: Broker, gateway_off_s: float, trusted: bool
) -> None:
    _, config = station_config(tmp_path, broker.url, end_to_end_ack=True)
    db = station_db(config)
    judge = untrusted_station_judge(config, db)
    before = judge.judge()
    assert not before.trusted and "gateway: no time yet" in before.detail
    store = tmp_path / "gateway.db"
    with (
        gateway_thread(broker.port, store, clock=lambda: time.time() + gateway_off_s),
        agent_thread(config),
    ):
        produce(db, config.source, 3)
        wait_until(
            lambda: undelivered(db) == 0 and recorded_gateway_time(db.conn) is not None,
            30,
            "acknowledged with the gateway's time",
        )
    assert [e["seq"] for e in gateway_events(store)] == [1, 2, 3]
    j = judge.judge()
    assert (j.trusted, j.source) == ((True, "gateway") if trusted else (False, None)), j.detail
    assert "NTP: not synchronised" in j.detail
    seen = recorded_gateway_time(db.conn)
    assert seen is not None and abs(seen.gateway - seen.station - gateway_off_s) < 5
    if not trusted:
        assert "gateway: 600 s ahead" in j.detail or "gateway: 599 s ahead" in j.detail


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        if text in caplog.text:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(60)
def test_a_malformed_gateway_time_is_logged_and_ignored(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    _, config = station_config(tmp_path, broker.url, end_to_end_ack=True)
    db = station_db(config)
    produce(db, config.source, 1)
    acks = f"{config.topic_prefix}/acks"
    with (
        caplog.at_level(logging.WARNING, logger="edge_agent.health"),
        agent_thread(config) as agent,
        Recorder(broker.port, [], client_id="fake-gateway", persistent=False) as gw,
    ):
        for bad in ("yesterday", 1764748800, "2026-13-01T00:00:00Z", None):
            payload = json.dumps({"through": 0, "time": bad}).encode()
            for _ in range(20):  # until the agent has subscribed and says it
                gw.client.publish(acks, payload, qos=1).wait_for_publish(5)
                if _logged(caplog, f"ignored: {bad!r}"):
                    break
            else:
                raise AssertionError(f"{bad!r} not logged: {caplog.text}")
        assert recorded_gateway_time(db.conn) is None
        good = json.dumps({"through": 1, "time": outbox.rfc3339(time.time())}).encode()
        gw.client.publish(acks, good, qos=1).wait_for_publish(5)
        wait_until(lambda: recorded_gateway_time(db.conn) is not None, 10, "a good time recorded")
        wait_until(lambda: agent.acked_through == 1, 10, "the good ack applied")


@pytest.mark.parametrize(
    "said", ["", "2026-11-23", "2026-11-23 07:00:00Z", "2026-11-23T07:00:00", 7.5, ["x"], {}]
)
def test_record_gateway_time_keeps_nothing_that_is_not_a_time(tmp_path: Path, said: object) -> None:
    _, config = station_config(tmp_path, "mqtt://127.0.0.1:9")
    db = station_db(config)
    health.record_gateway_time(db, said, time.time())
    assert "clock.gateway" not in outbox.read_state(db)
    health.record_gateway_time(db, "2026-11-23T07:00:00.5+08:00", 1795388400.0)
    row = outbox.read_state(db)["clock.gateway"]
    assert row == {
        "gateway": "2026-11-22T23:00:00.500Z",
        "station": "2026-11-22T23:00:00.000Z",
        "offset_s": 0.5,
    }
