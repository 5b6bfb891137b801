"""What the gateway accepts from the broker: an event that keeps the published contract.

``Intake.event(topic, payload)`` turns one message on ``sampling/{township}/{station}/events``
into an ``Event`` ready to store, or raises ``Rejected`` with a reason (a short word the
gateway counts by) and a sentence (what it logs). Checked, in order: the topic, JSON, the
event's schema (``docs/events``, packaged as ``edge_agent.gateway.event_schemas``), a type
that has a schema, the ``source`` naming the topic's station, and, when the township's
stations are listed (``--stations FILE``), a station on that list.

``Intake.station_message`` reads ``status`` and ``telemetry`` messages the same way, for the
station list.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import jsonschema_rs
import orjson

ENVELOPE = "envelope"
STATION_KINDS = ("status", "telemetry")


class Event(NamedTuple):
    """One accepted event, as the stores write it."""

    township: str
    station: str
    seq: int
    id: str
    type: str
    time: str  # RFC 3339, as the station wrote it
    happened_at: float  # the same instant as Unix seconds, for grouping without parsing
    payload: str  # the event's JSON text, unchanged


class Rejected(Exception):
    """A message the gateway will not store; ``reason`` names the kind, the text says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every packaged event schema by name (``envelope`` or the event type)."""
    out: dict[str, dict[str, Any]] = {}
    for item in resources.files("edge_agent.gateway.event_schemas").iterdir():
        if item.name.endswith(".schema.json"):
            out[item.name.removesuffix(".schema.json")] = json.loads(item.read_text("utf-8"))
    return out


@cache
def _validator(name: str) -> jsonschema_rs.Draft202012Validator:
    # jsonschema-rs: some 5 us an event where the pure-Python jsonschema takes 300 (the
    # tests cross-check the two on generated events).
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in schemas().values()])
    return jsonschema_rs.Draft202012Validator(
        schemas()[name], registry=registry, validate_formats=True
    )


def _first_problem(validator: jsonschema_rs.Draft202012Validator, event: Any) -> str | None:
    if validator.is_valid(event):
        return None
    error = next(iter(validator.iter_errors(event)))
    where = "/".join(str(p) for p in error.instance_path) or "(event)"
    return f"{where}: {error.message}"


def split_topic(topic: str) -> tuple[str, str, str]:
    """``sampling/{township}/{station}/{kind}`` -> (township, station, kind)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "sampling" or not parts[1] or not parts[2]:
        raise Rejected("topic", f"not a station topic: {topic}")
    return parts[1], parts[2], parts[3]


def happened_at(text: str) -> float:
    """An RFC 3339 time in Unix seconds (``Rejected`` for one Python cannot read, e.g. a
    leap second)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise Rejected("schema", f"time {text!r}: {exc}") from None


class Intake:
    """Checks messages against the contract; ``stations`` (township, station) limits who may
    send (None: every station is accepted)."""

    def __init__(self, stations: frozenset[tuple[str, str]] | None = None) -> None:
        self.stations = stations

    def _known(self, township: str, station: str) -> None:
        if self.stations is not None and (township, station) not in self.stations:
            raise Rejected(
                "unknown_station", f"station {township}/{station} is not on the township's list"
            )

    def event(self, topic: str, payload: bytes) -> Event:
        township, station, kind = split_topic(topic)
        if kind != "events":
            raise Rejected("topic", f"not an events topic: {topic}")
        self._known(township, station)
        event = _load(payload)
        type_ = event.get("type")
        if isinstance(type_, str) and type_ in schemas() and type_ != ENVELOPE:
            problem = _first_problem(_validator(type_), event)
        else:
            problem = _first_problem(_validator(ENVELOPE), event)
            if problem is None:
                raise Rejected("unknown_type", f"type {type_!r} has no schema")
        if problem is not None:
            raise Rejected("schema", f"the event breaks its schema: {problem}")
        if event["source"] != f"urn:sampling:{township}:{station}":
            raise Rejected("source", f"source {event['source']!r} does not match the topic {topic}")
        return Event(
            township,
            station,
            event["seq"],
            event["id"],
            str(type_),
            event["time"],
            happened_at(event["time"]),
            payload.decode(),
        )

    def station_message(self, topic: str, payload: bytes) -> tuple[str, str, str, dict[str, Any]]:
        """A ``status`` or ``telemetry`` message -> (township, station, kind, body)."""
        township, station, kind = split_topic(topic)
        if kind not in STATION_KINDS:
            raise Rejected("topic", f"not a status or telemetry topic: {topic}")
        self._known(township, station)
        body = _load(payload)
        if kind == "status" and body.get("state") not in ("online", "offline"):
            raise Rejected("schema", f"a status whose state is {body.get('state')!r}")
        return township, station, kind, body


def _load(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected("not_json", f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Rejected("not_json", f"not a JSON object but {type(body).__name__}")
    return body
