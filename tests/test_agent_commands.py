"""Commands from the gateway: validated, applied whole or not at all, answered with a reason."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import commands, outbox
from edge_agent.agent import Agent
from edge_agent.db import write_transaction
from edge_agent.errors import CommandError
from edge_agent.health import cpu_temperature
from firmware.config import SamplingSection
from tests.support.contract import validate_event
from tests.support.edge import (
    agent_thread,
    produce,
    station_config,
    station_db,
    undelivered,
    wait_until,
)
from tests.support.gateway_recorder import Recorder
from tests.support.mosquitto import Broker

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "sampling/T01/K03"


def _cmd(command: str, args: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "command": command, **extra}
    if args is not None:
        body["args"] = args
    return json.dumps(body).encode()


REJECTED: list[tuple[bytes, str]] = [
    (b"{not json", "malformed command: not JSON"),
    (b"\xff\xfe", "malformed command: not UTF-8"),
    (b"[1, 2]", "is not of type 'object'"),
    (
        json.dumps({"command": "set_pool_size", "args": {"pool_size": 8}}).encode(),
        "'id' is a required property",
    ),
    (json.dumps({"id": "not-a-uuid", "command": "set_pool_size"}).encode(), "command.id"),
    (_cmd("reboot"), "unknown command 'reboot'"),
    (_cmd("set_pool_size", {"pool_size": "8"}), "args.pool_size: '8' is not of type 'integer'"),
    (_cmd("set_pool_size", {"pool_size": 25}), "25 is greater than the maximum of 20"),
    (_cmd("set_pool_size", {}), "'pool_size' is a required property"),
    (_cmd("set_pool_size", {"pool_size": 8, "extra": 1}), "Additional properties"),
    (_cmd("set_thresholds", {}), "args"),
    (_cmd("set_thresholds", {"fever_threshold_c": 41}), "41 is greater than the maximum of 40"),
    (_cmd("resend_from", {"seq": 0}), "0 is less than the minimum of 1"),
    (_cmd("set_pool_size", {"pool_size": 8}, sender="x"), "Additional properties"),
]


@pytest.mark.parametrize(("payload", "why"), REJECTED)
def test_parse_rejects_with_a_reason(payload: bytes, why: str) -> None:
    with pytest.raises(CommandError) as err:
        commands.parse(payload)
    assert why in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.text(max_size=10),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                lambda c: (
                    st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3)
                ),
                max_leaves=8,
            ),
            max_size=4,
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_parse_raises_only_command_errors(payload: bytes) -> None:
    try:
        cmd = commands.parse(payload)
    except CommandError as exc:
        assert str(exc)
    else:
        assert cmd.command in commands.COMMANDS


def test_inconsistent_thresholds_change_nothing(tmp_path: Path) -> None:
    _, config = station_config(tmp_path, "mqtt://127.0.0.1:1")
    db = station_db(config)
    cmd = commands.parse(
        _cmd("set_thresholds", {"fever_threshold_c": 38.5, "plausible_max_c": 38.2})
    )
    with pytest.raises(CommandError, match="out of range"):
        commands.apply_settings(db, config.source, config.sampling, cmd)
    assert outbox.settings_overrides(db.conn) == {}
    assert outbox.stats(db).last_seq == 0
    # Valid on its own, but not with what is already in force: still all or nothing.
    ok = commands.parse(_cmd("set_thresholds", {"plausible_max_c": 39.0}))
    commands.apply_settings(db, config.source, config.sampling, ok)
    clash = commands.parse(_cmd("set_thresholds", {"fever_threshold_c": 39.5}))
    with pytest.raises(CommandError, match="out of range"):
        commands.apply_settings(db, config.source, config.sampling, clash)
    assert outbox.settings_overrides(db.conn) == {"sampling.plausible_max_c": 39.0}
    assert outbox.stats(db).last_seq == 1


def test_published_command_schemas_match_the_ones_the_agent_uses() -> None:
    docs = ROOT / "docs" / "commands"
    names = [*commands.COMMANDS, "envelope", "reply"]
    for name in names:
        assert (docs / f"{name}.schema.json").read_text() == json.dumps(
            commands.schema(name), indent=2
        ) + "\n", name
    # The schema bounds are the configuration's bounds.
    pool = commands.schema("set_pool_size")["properties"]["pool_size"]
    field = SamplingSection.model_fields["pool_size"]
    bounds = {type(m).__name__: m for m in field.metadata}
    assert pool["minimum"] == bounds["Ge"].ge and pool["maximum"] == bounds["Le"].le


def _replies(rec: Recorder) -> dict[Any, dict[str, Any]]:
    return {m.json()["id"]: m.json() for m in rec.on("replies")}


@pytest.mark.timeout(60)
def test_commands_over_mqtt(tmp_path: Path, broker: Broker) -> None:
    _, config = station_config(tmp_path, broker.url)
    db = station_db(config)
    produce(db, config.source, 5)
    with Recorder(broker.port) as rec, agent_thread(config):
        wait_until(lambda: undelivered(db) == 0, 20, "delivered")
        rec.wait_for(lambda r: len(r.events()) == 5, 10, "recorded")
        before = outbox.stats(db).last_seq

        def send(payload: bytes) -> None:
            rec.client.publish(f"{PREFIX}/commands", payload, qos=1)

        # Everything rejected: a reply says why, nothing changes.
        bad = [p for p, _ in REJECTED]
        for p in bad:
            send(p)
        rec.wait_for(lambda r: len(r.on("replies")) == len(bad), 10, "replies to rejects")
        replies = [m.json() for m in rec.on("replies")]
        assert all(r["ok"] is False and r["error"] for r in replies)
        for (_, why), r in zip(REJECTED, replies, strict=True):
            assert why in r["error"]
        assert replies[0]["id"] is None  # not JSON: no id to answer to
        assert replies[5]["id"] == json.loads(bad[5])["id"]
        assert outbox.settings_overrides(db.conn) == {}
        assert outbox.stats(db).last_seq == before

        # A valid settings change: stored, recorded as an event, delivered.
        ok = _cmd("set_pool_size", {"pool_size": 8})
        send(ok)
        ok_id = json.loads(ok)["id"]
        rec.wait_for(lambda r: ok_id in _replies(r), 10, "reply to set_pool_size")
        assert _replies(rec)[ok_id] == {
            "id": ok_id,
            "ok": True,
            "error": None,
            "result": {"changed": {"sampling.pool_size": 8}},
        }
        assert outbox.settings_overrides(db.conn) == {"sampling.pool_size": 8}
        origin = db.conn.execute("SELECT origin FROM settings_override").fetchone()[0]
        assert origin == f"command:{ok_id}"
        rec.wait_for(lambda r: len(r.events()) == 6, 10, "settings event delivered")
        changed = rec.events()[-1]
        assert changed["type"] == "sampling.settings.changed"
        validate_event(changed)
        assert changed["data"] == {
            "command": ok_id,
            "changes": {"sampling.pool_size": 8},
            "previous": {"sampling.pool_size": 10},
        }

        # Telemetry on request.
        tel = _cmd("request_telemetry")
        n_before = len(rec.on("telemetry"))  # one went out when the agent connected
        assert n_before == 1
        send(tel)
        rec.wait_for(lambda r: len(r.on("telemetry")) == 2, 10, "telemetry on request")
        t = rec.on("telemetry")[-1].json()
        assert t["outbox_depth"] == 0 and t["last_seq"] == 6
        assert t["delivered_through"] == 6
        assert set(t) >= {
            "oldest_undelivered_age_s",
            "disk_free_mb",
            "cpu_temperature_c",
            "kiosk_queue_length",
            "alerts",
        }
        assert t["disk_free_mb"] > 0

        # Resend from seq 3: the stored events from 3 on come again, in order.
        resend = _cmd("resend_from", {"seq": 3})
        send(resend)
        rid = json.loads(resend)["id"]
        rec.wait_for(lambda r: len(r.events()) == 10, 10, "resent events")
        assert [e["seq"] for e in rec.events()] == [1, 2, 3, 4, 5, 6, 3, 4, 5, 6]
        assert _replies(rec)[rid]["result"] == {"resending": 4, "from": 3}
        wait_until(lambda: undelivered(db) == 0, 10, "delivered again")

        beyond = _cmd("resend_from", {"seq": 99})
        send(beyond)
        bid = json.loads(beyond)["id"]
        rec.wait_for(lambda r: bid in _replies(r), 10, "reply to resend_from 99")
        assert "beyond the last event (6)" in _replies(rec)[bid]["error"]


def test_telemetry_reads_the_kiosk_queue_and_temperature(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert cpu_temperature(zone) == 48.3
    assert cpu_temperature(tmp_path / "absent") is None
    _, config = station_config(tmp_path, "mqtt://127.0.0.1:1")
    db = station_db(config)
    produce(db, config.source, 3)
    with write_transaction(db) as conn:
        outbox.set_state(conn, "kiosk.queue_length", 7)
    t = Agent(config, db).telemetry()
    assert t["kiosk_queue_length"] == 7
    assert t["outbox_depth"] == 3 and t["delivered_through"] == 0
    assert t["oldest_undelivered_age_s"] >= 0


def test_a_command_delivered_twice_is_applied_once(tmp_path: Path) -> None:
    _, config = station_config(tmp_path, "mqtt://127.0.0.1:1")
    db = station_db(config)
    first = commands.parse(_cmd("set_pool_size", {"pool_size": 6}))
    later = commands.parse(_cmd("set_pool_size", {"pool_size": 12}))
    assert commands.apply_settings(db, config.source, config.sampling, first) == {
        "sampling.pool_size": 6
    }
    commands.apply_settings(db, config.source, config.sampling, later)
    # The first command comes again (QoS 1 redelivery): it must not undo the later one.
    again = commands.apply_settings(db, config.source, config.sampling, first)
    assert again == {"sampling.pool_size": 6}
    assert outbox.settings_overrides(db.conn) == {"sampling.pool_size": 12}
    assert outbox.last_seq(db) == 2
