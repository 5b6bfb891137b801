"""The edge agent against a real Mosquitto: delivery, order, outages, restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent import outbox
from tests.support.edge import (
    agent_thread, all_events, produce, station_config, station_db, undelivered, wait_until,
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
    assert status and status[0].json()["state"] == "online"
