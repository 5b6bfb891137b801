"""What the gateway accepts: the published contract, checked message by message."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.gateway import cli as gateway_cli
from edge_agent.gateway.intake import Intake, Rejected, schemas
from tests.support.contract import problems
from tests.support.gateway_events import event_bytes, event_dict, topic

ROOT = Path(__file__).resolve().parents[1]
INTAKE = Intake()


def reason(payload: bytes, on: str = topic(), intake: Intake = INTAKE) -> str:
    with pytest.raises(Rejected) as caught:
        intake.event(on, payload)
    return caught.value.reason


def test_a_station_event_is_accepted_whole() -> None:
    payload = event_bytes(7, at=1_790_000_000.25)
    ev = INTAKE.event(topic(), payload)
    d = json.loads(payload)
    assert (ev.township, ev.station, ev.seq) == ("T01", "K03", 7)
    assert (ev.id, ev.type) == (d["id"], d["type"])
    assert ev.time == d["time"] and ev.happened_at == pytest.approx(1_790_000_000.25)
    assert ev.payload == payload.decode()


def test_each_kind_of_bad_event_is_rejected_with_its_reason() -> None:
    def changed(**fields: object) -> bytes:
        return json.dumps({**event_dict(1), **fields}).encode()

    data = {"tube": "T1", "resident": "r1"}  # no position
    assert reason(b"{not json") == "not_json"
    assert reason(b"\xff\xfe") == "not_json"
    assert reason(b"[1, 2]") == "not_json"
    assert reason(changed(seq=float("nan"))) == "not_json"  # NaN is not JSON
    assert reason(changed(time="2026-11-23T23:59:60Z")) == "schema"  # a leap second
    assert reason(changed(time="2026-13-45T08:00:00Z")) == "schema"
    assert reason(changed(seq=0)) == "schema"
    assert reason(changed(id="not-a-uuid")) == "schema"
    assert reason(changed(data=data)) == "schema"
    assert reason(changed(extra_attr=1)) == "schema"  # not a CloudEvents extension name
    assert reason(changed(type="sampling.tube.teleported")) == "unknown_type"
    assert reason(changed(type=None)) == "schema"
    assert reason(changed(source="urn:sampling:T01:K99")) == "source"  # speaking for another
    assert reason(event_bytes(1), on="sampling/T01/K03/status") == "topic"
    assert reason(event_bytes(1), on="elsewhere/T01/K03/events") == "topic"


def test_the_stations_list_limits_who_may_send() -> None:
    listed = Intake(frozenset({("T01", "K03")}))
    assert listed.event(topic(), event_bytes(1)).station == "K03"
    k04 = event_bytes(1, station="K04")
    assert reason(k04, on=topic(station="K04"), intake=listed) == "unknown_station"
    assert INTAKE.event(topic(station="K04"), k04).station == "K04"  # no list: all accepted
    with pytest.raises(Rejected) as caught:
        listed.station_message(topic(station="K04", kind="status"), b'{"state": "online"}')
    assert caught.value.reason == "unknown_station"


def test_status_and_telemetry_are_read_or_rejected() -> None:
    assert INTAKE.station_message(topic(kind="status"), b'{"state": "offline"}') == (
        "T01",
        "K03",
        "status",
        {"state": "offline"},
    )
    for payload in (b'{"state": "asleep"}', b"nope", b"3"):
        with pytest.raises(Rejected):
            INTAKE.station_message(topic(kind="status"), payload)
    assert INTAKE.station_message(topic(kind="telemetry"), b"{}")[2] == "telemetry"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["events", "status", "telemetry", "acks"]))
def test_any_bytes_are_accepted_or_rejected_never_a_crash(payload: bytes, kind: str) -> None:
    on = topic(kind=kind)
    try:
        if kind == "events":
            INTAKE.event(on, payload)
        else:
            INTAKE.station_message(on, payload)
    except Rejected as exc:
        assert exc.reason in {"not_json", "schema", "topic", "unknown_type", "source"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([*sorted(event_dict(1)), "data.tube", "data.position", "data.resident"]),
    json_values,
)
def test_the_gateway_and_an_independent_validator_agree_on_every_event(
    field: str, value: object
) -> None:
    """The gateway checks with jsonschema-rs; the tests' contract uses Python's jsonschema."""
    event = event_dict(5)
    if field.startswith("data."):
        event["data"] = {**event["data"], field.removeprefix("data."): value}
    else:
        event[field] = value
    found = problems(event)
    try:
        ev = INTAKE.event(topic(), json.dumps(event).encode())
    except Rejected as exc:
        assert found or exc.reason == "source", exc
    else:
        assert found == [], f"accepted what the contract refuses: {found}"
        assert (ev.seq, ev.id) == (event["seq"], event["id"])


def test_the_packaged_schemas_are_the_published_ones() -> None:
    published = {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text())
        for p in (ROOT / "docs" / "events").glob("*.schema.json")
    }
    assert schemas() == published


def test_the_guide_names_every_gateway_option_and_action() -> None:
    text = (ROOT / "docs" / "gateway.md").read_text()
    parser = argparse.ArgumentParser()
    gateway_cli.configure(parser)
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    missing = [o for o in options if o != "--help" and f"`{o}`" not in text]
    assert missing == []
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [a for a in gateway_cli.ACTIONS if f"station gateway {a}" not in docs]
    assert missing == []
