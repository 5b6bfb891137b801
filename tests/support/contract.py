"""The published event contract (docs/events/*.schema.json), for every test that sees events.

``validate_event(event)`` checks one event (a dict, or the JSON bytes/text of one) against the
envelope and its type's schema and fails the test with every problem listed. An event type
without a schema in docs/events fails too: a new type gets its schema before it ships.
``check_outbox(conn)`` validates every stored event and that ``seq`` runs without gaps.
"""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

EVENTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "events"
ENVELOPE = "envelope"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every schema in docs/events by name (``envelope`` or the event type)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(EVENTS_DIR.glob("*.schema.json")):
        out[path.name.removesuffix(".schema.json")] = json.loads(path.read_text("utf-8"))
    return out


@cache
def _registry() -> Registry:
    resources = [
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in schemas().values()
    ]
    return Registry().with_resources(resources)


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = schemas()[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema,
        registry=_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def event_types() -> list[str]:
    return sorted(n for n in schemas() if n != ENVELOPE)


def problems(event: Any) -> list[str]:
    """Every way ``event`` breaks the contract (empty when it keeps it)."""
    if isinstance(event, bytes | str):
        event = json.loads(event)
    found = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(event)'}: {e.message}"
        for e in _validator(ENVELOPE).iter_errors(event)
    ]
    type_ = event.get("type") if isinstance(event, dict) else None
    if isinstance(type_, str):
        if type_ not in schemas():
            found.append(
                f"type {type_!r} has no schema in docs/events (known: {', '.join(event_types())})"
            )
        else:
            found += [
                f"{'/'.join(str(p) for p in e.absolute_path) or '(event)'}: {e.message}"
                for e in _validator(type_).iter_errors(event)
            ]
    return found


def validate_event(event: Any) -> None:
    """Fail (AssertionError) unless ``event`` keeps the published contract."""
    found = problems(event)
    if found:
        type_ = event.get("type") if isinstance(event, dict) else "?"
        raise AssertionError(f"event {type_} breaks the contract:\n  " + "\n  ".join(found))


def check_outbox(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Validate every event in the outbox and that ``seq`` is 1..n-gap-free; returns them."""
    rows = conn.execute("SELECT seq, id, type, payload FROM outbox ORDER BY seq").fetchall()
    events: list[dict[str, Any]] = []
    for seq, id_, type_, payload in rows:
        ev = json.loads(payload)
        validate_event(ev)
        assert (ev["seq"], ev["id"], ev["type"]) == (seq, id_, type_), "row and payload disagree"
        events.append(ev)
    seqs = [e["seq"] for e in events]
    if seqs:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq has gaps: {seqs}"
    return events
